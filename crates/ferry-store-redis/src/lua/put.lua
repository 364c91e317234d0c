-- Creates or replaces one directory record. KEYS[1] the record's hash,
-- KEYS[2] the hash that must hold ARGV[4] first (an app's tenant), or none.
-- ARGV[1] field, ARGV[2] JSON, ARGV[3] "create" | "update", ARGV[5] the
-- directory version key, bumped with every change.
-- Returns 1 done, 0 the name is taken (create) or absent (update), -1 no parent.
if KEYS[2] and redis.call('HEXISTS', KEYS[2], ARGV[4]) == 0 then return -1 end
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if (ARGV[3] == 'create') == exists then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', ARGV[5])
return 1
