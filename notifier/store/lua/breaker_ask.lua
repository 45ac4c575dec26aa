-- Whether the account may call WeChat now: always while its breaker is closed; while it
-- is open, not before its sleep is over, and then once, fleet-wide: the caller that sets
-- the trial key (NX, expiring, so a trial whose worker died is let through again) makes
-- the trial call, and everyone else waits for its outcome.
-- KEYS: the breaker (a hash, `state` 'open' with `until`, or the closed window's buckets),
-- the trial key.
-- ARGV: now, the caller's trial token, the trial's seconds, the longest wait while a trial runs.
-- Returns {verdict ('closed', 'open' or 'trial'), seconds to wait, transition ('' or
-- 'half-open')}.
local state = redis.call('HMGET', KEYS[1], 'state', 'until')
if state[1] ~= 'open' then return {'closed', '0', ''} end
local left = tonumber(state[2]) - tonumber(ARGV[1])
if left > 0 then return {'open', tostring(left), ''} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then
  return {'trial', '0', 'half-open'}
end
local ttl = redis.call('TTL', KEYS[2])
return {'open', tostring(math.min(math.max(ttl, 1), tonumber(ARGV[4]))), ''}
