-- Takes back a message whose write the replicas did not confirm (the
-- client was told 451 and will send it again): removes it and subtracts
-- its counts. A peak or an alert it raised stays (rare, and on the safe
-- side for the customer's alerts). KEYS[1] the message's hash, KEYS[2]
-- the due-time index; ARGV[1] id, ARGV[2] the plan as JSON, or "".
-- Returns 1, or 0 when the message is not there (already delivered, or
-- never written).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == '' then return 1 end
local plan = cjson.decode(ARGV[2])
local add = plan.add
for _, c in ipairs(plan.counts) do
  redis.call('HINCRBY', c[1], c[2] .. '|m', -add[1])
  redis.call('HINCRBY', c[1], c[2] .. '|r', -add[2])
  redis.call('HINCRBY', c[1], c[2] .. '|b', -add[3])
end
return 1
