-- Counts one failed sign-in under the three lockout rules (the same rule
-- as ferry_core::lockout::FailureCount::fail). KEYS[1..3] the pair,
-- username and address counters (hashes: n failures, s window start,
-- u locked until), KEYS[4] the lockouts in force (subject → until).
-- ARGV[1] now (ms), then per counter: its limit, its window (ms) and its
-- subject. Returns {counter index, failures, until} per lockout started.
local now = tonumber(ARGV[1])
local started = {}
for i = 1, 3 do
  local limit, window, subject = tonumber(ARGV[i * 3 - 1]), tonumber(ARGV[i * 3]), ARGV[i * 3 + 1]
  local v = redis.call('HMGET', KEYS[i], 'n', 's', 'u')
  local n, s, u = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if n == 0 or now >= s + window then
    n, s = 0, now
  end
  n = n + 1
  if n >= limit and now >= u then
    u = now + window
    redis.call('ZADD', KEYS[4], string.format('%.0f', u), subject)
    started[#started + 1] = {i, n, string.format('%.0f', u)}
  end
  redis.call('HSET', KEYS[i], 'n', n, 's', string.format('%.0f', s), 'u', string.format('%.0f', u))
  -- Relative to the caller's clock, which need not be the server's.
  redis.call('PEXPIRE', KEYS[i], string.format('%.0f', math.max(s + window, u) - now))
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.0f', now))
return started
