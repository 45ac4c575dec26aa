-- Counts the outcome of calls to WeChat in the account's breaker and moves its state:
-- closed -> open when the rolling window holds at least the minimum of calls and the
-- failures reach the error rate; open -> closed when the trial succeeds, open again for
-- another sleep when it fails. While open, only the trial's outcome counts: other calls
-- were in flight when it opened.
-- KEYS: the breaker (a hash: `state` 'open' and `until`; or, closed, ten buckets of the
-- window, t<i> its number, c<i> its calls, f<i> its failures), the trial key.
-- ARGV: now, window seconds, minimum calls, error rate, sleep seconds, successes, failures,
-- the trial's token ('' for calls that were not the trial).
-- Returns {state ('closed' or 'open'), seconds until a trial is due, transition ('',
-- 'opened', 'reopened' or 'closed'), calls and failures in the window when it opened}.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local min_calls, rate, sleep = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ok, failed, token = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local BUCKETS = 10

-- Opening forgets the window: closing again starts counting anew.
local function open(transition, calls, failures)
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tostring(now + sleep))
  -- Kept a day with nobody asking; a breaker forgotten after that is closed again.
  redis.call('EXPIRE', KEYS[1], 86400)
  return {'open', tostring(sleep), transition, calls, failures}
end

local state = redis.call('HMGET', KEYS[1], 'state', 'until')
if state[1] == 'open' then
  if token ~= '' then
    local holder = redis.call('GET', KEYS[2])
    -- A trial whose key expired still tells, unless a newer trial holds the key.
    if not holder or holder == token then
      if failed > 0 then return open('reopened', 0, 0) end
      redis.call('DEL', KEYS[1], KEYS[2])
      return {'closed', '0', 'closed', 0, 0}
    end
  end
  return {'open', tostring(math.max(0, tonumber(state[2]) - now)), '', 0, 0}
end

local bucket = math.floor(now / (window / BUCKETS))
local slot = tostring(bucket % BUCKETS)
if redis.call('HGET', KEYS[1], 't' .. slot) ~= tostring(bucket) then
  redis.call('HSET', KEYS[1], 't' .. slot, tostring(bucket), 'c' .. slot, 0, 'f' .. slot, 0)
end
redis.call('HINCRBY', KEYS[1], 'c' .. slot, ok + failed)
if failed > 0 then redis.call('HINCRBY', KEYS[1], 'f' .. slot, failed) end
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 60)
-- Only a failure can open the breaker, so only a failure sums the window.
if failed == 0 then return {'closed', '0', '', 0, 0} end
local calls, failures = 0, 0
for i = 0, BUCKETS - 1 do
  local b = redis.call('HMGET', KEYS[1], 't' .. i, 'c' .. i, 'f' .. i)
  if b[1] and tonumber(b[1]) > bucket - BUCKETS then
    calls = calls + tonumber(b[2])
    failures = failures + tonumber(b[3])
  end
end
if calls >= min_calls and failures >= rate * calls then
  return open('opened', calls, failures)
end
return {'closed', '0', '', 0, 0}
