-- Keeps a sign-in fact for the incident watch. KEYS[1] the application's
-- source addresses (address → when first seen, ms), KEYS[2] every
-- application's facts, scored by time. ARGV[1] the address signed in from
-- ('' for a fact that names none), ARGV[2] now (ms), ARGV[3] the fact
-- (JSON), ARGV[4] facts before this time are forgotten.
-- An address is a fact only when new to an application that had others.
-- Returns 1 when the fact was kept.
if ARGV[1] ~= '' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
  if redis.call('HLEN', KEYS[1]) < 2 then return 0 end
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
return 1
