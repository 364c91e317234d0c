-- An incident's opening or closing. KEYS[1] the incidents (id → JSON),
-- KEYS[2] each application's open one (`tenant\tapp` → id), KEYS[3] their
-- ids by opening time, KEYS[4] the applications whose new mail is held.
-- ARGV[1] "open" | "resolve", ARGV[2] id, ARGV[3] the application's slot,
-- ARGV[4] the incident (JSON), ARGV[5] the time opened, ARGV[6] "hold" when
-- its policy holds the application's mail; opening, also KEYS[5] its
-- alert, KEYS[6] the alerts by time, KEYS[7] the outbox, ARGV[7] the
-- alert (JSON), ARGV[8] its id and ARGV[9] its value: told once, with the opening.
-- open: 1 opened, 0 the application has one open (nothing written).
-- resolve: 1 closed, 0 not open (closed already, or another is).
if ARGV[1] == 'open' then
  if redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[2]) == 0 then return 0 end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
  if ARGV[6] == 'hold' then redis.call('HSET', KEYS[4], ARGV[3], ARGV[2]) end
  redis.call('HSET', KEYS[5], 'alert', ARGV[7], 'value', ARGV[9], 'units', 0, 'drivers', '', 'attempts', 0)
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[8])
  redis.call('ZADD', KEYS[7], ARGV[5], ARGV[8])
  return 1
end
if redis.call('HGET', KEYS[2], ARGV[3]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[3])
return 1
