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
-- Returns 0 when spooled, or the 1-based index of the cap that refused it.
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

for _, c in ipairs(plan.counts) do
  redis.call('HINCRBY', c[1], c[2] .. '|m', add[1])
  redis.call('HINCRBY', c[1], c[2] .. '|r', add[2])
  redis.call('HINCRBY', c[1], c[2] .. '|b', add[3])
  if c[3] > 0 then redis.call('EXPIRE', c[1], c[3]) end
end
redis.call('ZADD', plan.hours, plan.hour, plan.hour)
for _, p in ipairs(plan.peaks) do
  local units = tonumber(redis.call('HGET', p[3], p[2] .. unit) or '0')
  local best = redis.call('HGET', p[1], p[2])
  local best_units = 0
  if best then best_units = tonumber(string.match(best, ' (%d+)$')) end
  if units > best_units then redis.call('HSET', p[1], p[2], plan.hour .. ' ' .. units) end
end

for i, t in ipairs(plan.thresholds) do
  local after = tonumber(redis.call('HGET', t.counter, t.field .. unit) or '0')
  local value, crossed
  if t.projection > 0 then
    value = math.floor(after * t.projection)
    crossed = value >= t.limit
  else
    value = after
    crossed = after - units_added < t.limit and after >= t.limit
  end
  local key = plan.alert_prefix .. t.id
  if crossed and redis.call('EXISTS', key) == 0 then
    -- Who drove it: every application counted in the window under the scope.
    local raw = redis.call('HGETALL', t.counter)
    local drivers = {}
    for j = 1, #raw, 2 do
      local f = raw[j]
      if string.sub(f, 1, #t.apps) == t.apps and string.sub(f, -#unit) == unit then
        drivers[#drivers + 1] = string.sub(f, 1, #f - #unit) .. '\t' .. raw[j + 1]
      end
    end
    redis.call('HSET', key, 'alert', plan.templates[i], 'value', value, 'units', after,
      'drivers', table.concat(drivers, '\n'), 'attempts', 0)
    redis.call('ZADD', plan.alert_times, plan.at, t.id)
    redis.call('ZADD', plan.outbox, plan.at, t.id)
  end
end
return 0
