-- Gives back a trial that made no call (its message was final, or held by another worker),
-- so the next caller makes the trial now rather than when the key expires.
-- KEYS: the trial key.
-- ARGV: the trial's token.
-- Returns 1 when the trial was given back, 0 when it was no longer this caller's.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
