-- Admits one message: unless its webhook-id was used before, queues its task (or, when it
-- has a send_at, enters it in the schedule instead) and writes its record, history and
-- idempotency key, in one step. The push or schedule comes first, so a failing write
-- leaves nothing behind. Calls push() (push.lua).
-- KEYS: idempotency key, record, history, queue, wake list, unfinished set, the metrics'
-- counters, the schedule's due set, its work hash.
-- ARGV: body digest, message id, now, history entry, envelope, idempotency TTL, record
-- retention, push limits (2), payload (JSON), due time ('' to queue now), the scheduled
-- work (JSON, notifier/store/schedule.py; '' to queue now), send_at as signed.
-- Returns the idempotency key's value ('<digest>|<id>') if it was set already, else false.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local status = 'queued'
if ARGV[11] == '' then
  push(KEYS[4], KEYS[5], KEYS[6], ARGV[5], ARGV[2], ARGV[3], tonumber(ARGV[8]), ARGV[9])
else
  -- Scheduled: not on a queue and not unfinished until the mover (move_due.lua) pushes it.
  redis.call('HSET', KEYS[9], ARGV[2], ARGV[12])
  redis.call('ZADD', KEYS[8], ARGV[11], ARGV[2])
  status = 'scheduled'
  redis.call('HSET', KEYS[2], 'send_at', ARGV[13])
end
redis.call('HSET', KEYS[2], 'status', status, 'updated', ARGV[3], 'payload', ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[7])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[6])
redis.call('HINCRBY', KEYS[7], 'accepted:single', 1)
return false
