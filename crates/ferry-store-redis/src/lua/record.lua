-- Saves a delivery attempt's outcome. KEYS[1] the message's hash, KEYS[2]
-- the due-time index, KEYS[3] the hours with outcome counts, KEYS[4] the
-- outcome counts of ARGV[5]'s hour; ARGV[1] id, ARGV[2] "done" | "retry" |
-- "continue", ARGV[3] envelope JSON, ARGV[4] the next due time (retry),
-- ARGV[5] the hour, ARGV[6] the lease the result was made under ('' for
-- none), ARGV[7] the events and suppression entries it makes (see
-- log.lua), then pairs of outcome field and count to add; KEYS[5] the set
-- of tenants with event streams.
-- Returns 1; 0 when the message is gone, -2 when ARGV[6] is no longer its
-- lease (it was leased again since): then nothing is written or counted.
-- The same record again (a retry after a reply lost in a failover) finds
-- its envelope already saved and counts nothing twice.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'l') ~= ARGV[6] then return -2 end
if ARGV[2] ~= 'done' and redis.call('HGET', KEYS[1], 'e') == ARGV[3] then return 1 end
if #ARGV >= 8 then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[5]) end
log_changes(KEYS[5], ARGV[7])
for i = 8, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
end
if ARGV[2] == 'done' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], 'e', ARGV[3])
if ARGV[2] == 'retry' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) end
return 1
