-- Deletes a directory record. KEYS[1] its hash, KEYS[2] the applications'
-- hash when deleting a tenant (refused while one of them names it).
-- ARGV[1] the name, ARGV[2] the directory version key.
-- Returns 1 done, 0 absent, or the name of an application still in the tenant.
if KEYS[2] then
  for _, json in ipairs(redis.call('HVALS', KEYS[2])) do
    local app = cjson.decode(json)
    if app.tenant == ARGV[1] then return app.username end
  end
end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', ARGV[2])
return 1
