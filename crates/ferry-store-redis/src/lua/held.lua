-- Releases or discards a held message. KEYS[1] the held messages, KEYS[2]
-- the due-time index, KEYS[3] the tenant's event stream, KEYS[4] the set
-- of tenants with event streams, KEYS[5] the message's hash.
-- ARGV[1] id, ARGV[2] now (ms), ARGV[3] "release" | "discard", ARGV[4] the
-- tenant, ARGV[5] its event, ARGV[6] the plan counting it as sent now
-- ('' for none), ARGV[7] the channel that wakes delivery nodes; counted in
-- KEYS[7] (the outcome counts of hour ARGV[9]) under field ARGV[8], the
-- hour noted in KEYS[6].
-- Returns 1, or 0 when the message is not held.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
log_event(KEYS[4], KEYS[3], ARGV[4], ARGV[2], ARGV[5])
redis.call('ZADD', KEYS[6], ARGV[9], ARGV[9])
redis.call('HINCRBY', KEYS[7], ARGV[8], 1)
if ARGV[3] == 'discard' then
  redis.call('DEL', KEYS[5])
  return 1
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('PUBLISH', ARGV[7], ARGV[1])
if ARGV[6] ~= '' then apply_plan(cjson.decode(ARGV[6])) end
return 1
