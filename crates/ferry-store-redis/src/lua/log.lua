-- Prepended to the scripts that log events. A record goes to its tenant's
-- stream with an id from its own time (ms), so a purge by time is XTRIM
-- MINID; when another node's clock wrote a later id first, the record
-- takes that id's millisecond instead (ids only increase).
local function log_event(tenants, stream, tenant, at_ms, record)
  local id = redis.pcall('XADD', stream, at_ms .. '-*', 'r', record)
  if type(id) == 'table' and id.err then
    local info = redis.call('XINFO', 'STREAM', stream)
    local last = '0-0'
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
    redis.call('XADD', stream, string.match(last, '^(%d+)-') .. '-*', 'r', record)
  end
  redis.call('SADD', tenants, tenant)
end

-- Changes as JSON: {"events": [[stream, tenant, "at_ms", record]],
-- "suppress": [[hash, recipient, entry]]}, or '' for none.
local function log_changes(tenants, changes)
  if changes == '' then return end
  local c = cjson.decode(changes)
  for _, e in ipairs(c.events) do log_event(tenants, e[1], e[2], e[3], e[4]) end
  for _, s in ipairs(c.suppress) do redis.call('HSET', s[1], s[2], s[3]) end
end

