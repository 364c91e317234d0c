-- Claims up to ARGV[3] members of the sorted set KEYS[1] (the alert
-- outbox) due at ARGV[1]: each is due again at ARGV[2], so no other node
-- takes it meanwhile. Returns the members claimed.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
