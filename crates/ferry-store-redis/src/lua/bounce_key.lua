-- Adds the newest return-path key if the newest now is the one expected.
-- KEYS[1] the keys' hash (id → JSON), KEYS[2] the newest key's id,
-- KEYS[3] the directory version; ARGV[1] id, ARGV[2] JSON, ARGV[3] the id
-- expected newest ('' for none). Returns 1 added, 0 another was first.
local newest = redis.call('GET', KEYS[2]) or ''
if newest ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
