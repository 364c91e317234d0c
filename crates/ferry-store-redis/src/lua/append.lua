-- Appends events and suppression entries that are not a message's change.
-- KEYS[1] the set of tenants with event streams; ARGV[1] the changes.
log_changes(KEYS[1], ARGV[1])
return 1
