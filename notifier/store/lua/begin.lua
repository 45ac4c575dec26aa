-- Starts an attempt in one round trip: skip a final, deferred or scheduled message, take
-- the claim, count it, and mark it seen in the unfinished set.
-- KEYS: the record, its claim, the unfinished set, its history.
-- ARGV: claim seconds, record retention, the message id, now.
-- Returns {attempts, status, payload, when it was admitted ('' if unknown)} when claimed,
-- {0, status} when final or deferred (unknown: ''), {-1, ttl} when another worker holds
-- the claim.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'sent' or status == 'delivered' or status == 'failed' or status == 'dead'
   or status == 'cancelled' then
  redis.call('ZREM', KEYS[3], ARGV[3])
  return {0, status}
end
-- Deferred waits for the quota's reset; only its requeue (requeue.lua) sends it again.
-- Scheduled waits for its send_at; only the mover (move_due.lua) queues it.
if status == 'deferred' or status == 'scheduled' then return {0, status} end
if not status then return {0, ''} end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return {-1, tostring(redis.call('TTL', KEYS[2]))}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], 'XX', ARGV[4], ARGV[3])
-- The history's first entry is the admission's (the 202): send latency counts from it.
local first = redis.call('LINDEX', KEYS[4], 0)
-- A scheduled message counts from when it was due and queued, not from its 202.
if first and string.find(first, '"status":"scheduled"', 1, true) then
  first = redis.call('LINDEX', KEYS[4], 1)
end
local admitted = first and string.match(first, '"at":([%d%.]+)') or ''
return {attempts, status, redis.call('HGET', KEYS[1], 'payload') or '', admitted}
