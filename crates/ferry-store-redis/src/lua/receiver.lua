-- A webhook receiver's hold and state. KEYS[1] its hash: `s` the state
-- (JSON), `h` the holder, `u` the hold's end (ms).
-- ARGV[1] "hold" | "save", ARGV[2] the holder;
-- hold: ARGV[3] now, ARGV[4] the hold's end; returns the state ('' for
--   none yet), or false when another holder's hold still runs;
-- save: ARGV[3] the state; returns 1 saved, 0 not the holder.
local holder = redis.call('HGET', KEYS[1], 'h') or ''
if ARGV[1] == 'hold' then
  local until_ms = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
  if holder ~= ARGV[2] and until_ms > tonumber(ARGV[3]) then return false end
  redis.call('HSET', KEYS[1], 'h', ARGV[2], 'u', ARGV[4])
  return redis.call('HGET', KEYS[1], 's') or ''
end
if holder ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[3])
return 1
