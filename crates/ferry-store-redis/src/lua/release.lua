-- Undoes a lease whose reply never reached its node: each message it took
-- that is still due when that lease ends (ARGV[1]), i.e. not recorded or
-- rescheduled since, is due again at ARGV[2]. KEYS[1] the due-time index,
-- KEYS[2] the lease's set of ids. Returns how many were released.
local released = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('ZSCORE', KEYS[1], id) == ARGV[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    released = released + 1
  end
end
redis.call('DEL', KEYS[2])
return released
