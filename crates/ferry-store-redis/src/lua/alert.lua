-- An alert delivery's outcome. KEYS[1] the alert's hash, KEYS[2] the outbox;
-- ARGV[1] the alert id, ARGV[2] "delivered" | "retry", ARGV[3] when
-- (delivered at, or due again at). Returns 1, or 0 when there is no such alert.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if ARGV[2] == 'delivered' then
  redis.call('HSET', KEYS[1], 'delivered', ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
