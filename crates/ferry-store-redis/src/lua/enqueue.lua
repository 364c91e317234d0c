-- Spools one message and applies its metering plan, atomically: Redis runs
-- a script alone, so two nodes racing across a threshold cannot both see it.
-- KEYS[1] the message's hash, KEYS[2] the due-time index.
-- ARGV[1] id, ARGV[2] due ms, ARGV[3] envelope JSON, ARGV[4] content,
-- ARGV[5] the plan as JSON, or "" for none (see `Plan` in plan.rs),
-- ARGV[6] the channel that wakes delivery nodes, or "" when the message
-- is pending (due later) until its replicas confirm it, ARGV[7] its
-- `accepted` event ('' for none), logged to KEYS[3] (its tenant's stream)
-- with KEYS[4] (the set of tenants with event streams), ARGV[8] the tenant,
-- ARGV[9] the event's time, ARGV[10] its `Sent` record ('' for none),
-- kept at KEYS[5] and indexed in KEYS[6] by ARGV[11], its id's time.
-- KEYS[7] the applications whose mail is held, KEYS[8] the held messages;
-- ARGV[12] the application (`tenant\tapp`), ARGV[13] its `held` event;
-- a held message is counted in KEYS[10] (the outcome counts of hour
-- ARGV[15]) under field ARGV[14], the hour noted in KEYS[9].
-- Returns 0 when spooled, -1 when held (neither due nor counted: its
-- application is under an incident), or the 1-based index of the cap that
-- refused it.
local incident = redis.call('HGET', KEYS[7], ARGV[12])
if incident then
  redis.call('HSET', KEYS[1], 'e', ARGV[3], 'b', ARGV[4])
  redis.call('HSET', KEYS[8], ARGV[1], incident)
  if ARGV[7] ~= '' then log_event(KEYS[4], KEYS[3], ARGV[8], ARGV[9], ARGV[7]) end
  log_event(KEYS[4], KEYS[3], ARGV[8], ARGV[9], ARGV[13])
  redis.call('ZADD', KEYS[9], ARGV[15], ARGV[15])
  redis.call('HINCRBY', KEYS[10], ARGV[14], 1)
  if ARGV[10] ~= '' then
    redis.call('SET', KEYS[5], ARGV[10])
    redis.call('ZADD', KEYS[6], ARGV[11], ARGV[1])
  end
  return -1
end
local plan = nil
if ARGV[5] ~= '' then plan = cjson.decode(ARGV[5]) end
local unit, add, units_added
if plan then
  unit = '|' .. plan.unit
  add = plan.add
  units_added = (plan.unit == 'm') and add[1] or add[2]
  for i, cap in ipairs(plan.caps) do
    local current = tonumber(redis.call('HGET', cap[1], cap[2] .. unit) or '0')
    if current + units_added > cap[3] then return i end
  end
end
redis.call('HSET', KEYS[1], 'e', ARGV[3], 'b', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[7] ~= '' then log_event(KEYS[4], KEYS[3], ARGV[8], ARGV[9], ARGV[7]) end
if ARGV[10] ~= '' then
  redis.call('SET', KEYS[5], ARGV[10])
  redis.call('ZADD', KEYS[6], ARGV[11], ARGV[1])
end
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[1]) end
if not plan then return 0 end

apply_plan(plan)
return 0
