-- Prepended to the scripts that count a message: adds a plan's counts
-- (see `Plan` in plan.rs), keeps the peaks and raises each alert whose
-- threshold the counts cross, once.
local function apply_plan(plan)
local unit = '|' .. plan.unit
local add = plan.add
local units_added = (plan.unit == 'm') and add[1] or add[2]
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
end

