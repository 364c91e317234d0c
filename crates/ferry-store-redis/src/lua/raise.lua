-- Raises an alert once: KEYS[1] the alert, KEYS[2] the alerts by time,
-- KEYS[3] the outbox; ARGV[1] the alert (JSON), ARGV[2] its value,
-- ARGV[3] its time, ARGV[4] its id. Returns 1 when raised, 0 when an alert
-- with that id exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'alert', ARGV[1], 'value', ARGV[2], 'units', 0, 'drivers', '', 'attempts', 0)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
