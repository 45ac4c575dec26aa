-- Admits one message: unless its webhook-id was used before, queues its task and writes
-- its record, history and idempotency key, in one step. The push comes first, so a
-- failing write leaves nothing behind. Calls push() (push.lua).
-- KEYS: idempotency key, record, history, queue, wake list, unfinished set, the metrics'
-- counters.
-- ARGV: body digest, message id, now, history entry, envelope, idempotency TTL, record
-- retention, push limits (2), payload (JSON).
-- Returns the idempotency key's value ('<digest>|<id>') if it was set already, else false.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
push(KEYS[4], KEYS[5], KEYS[6], ARGV[5], ARGV[2], ARGV[3], tonumber(ARGV[8]), ARGV[9])
redis.call('HSET', KEYS[2], 'status', 'queued', 'updated', ARGV[3], 'payload', ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[7])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[6])
redis.call('HINCRBY', KEYS[7], 'accepted:single', 1)
return false
