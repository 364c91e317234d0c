-- Takes up to ARGV[3] messages due at ARGV[1]: each is due again at ARGV[2]
-- (the lease is the schedule moved forward, so a node that dies loses
-- nothing). KEYS[1] the due-time index, KEYS[2] this lease's set of ids
-- (kept until the lease ends, so `release.lua` can undo a lease whose reply
-- was lost); ARGV[4] the message key prefix, ARGV[5] the lease in ms,
-- ARGV[6] this lease's token, kept in each message's hash ('l'): it fences
-- `record.lua`. Returns envelope, content for each message taken.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local m = redis.call('HMGET', ARGV[4] .. id, 'e', 'b')
  if m[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('SADD', KEYS[2], id)
    redis.call('HSET', ARGV[4] .. id, 'l', ARGV[6])
    out[#out + 1] = m[1]
    out[#out + 1] = m[2] or ''
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
if #out > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
return out
