-- Takes send permits from the account's token bucket: refills it by the time elapsed
-- (Redis's clock, so all hosts agree), then grants up to `want` tokens while keeping
-- `reserve` back.
-- KEYS: the bucket (a hash of tokens and ts).
-- ARGV: rate per second, burst, want, reserve.
-- Returns {granted, seconds to wait if none}.
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local want, reserve = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = 0
if tokens - reserve >= 1 then
  granted = math.min(want, math.floor(tokens - reserve))
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
local wait = 0
if granted == 0 then wait = (reserve + 1 - tokens) / rate end
return {granted, tostring(wait)}
