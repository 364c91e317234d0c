-- Moves an existing member of a sorted set: KEYS[1] the set, ARGV[1] the
-- member, ARGV[2] its new score. Returns 1, or 0 when it is not there.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
