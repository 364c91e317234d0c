-- Moves leases still held: for each pair ARGV[2k], ARGV[2k+1] (an id and
-- the end of the lease its node holds), a message still due at exactly
-- that time is due at ARGV[1] instead. A lease that ran out and was taken
-- by another node, or a message recorded since, has another due time and
-- is left alone. KEYS[1] the due-time index. Returns the ids moved.
local moved = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    moved[#moved + 1] = id
  end
end
return moved
