-- Admits one campaign: unless its webhook-id was used before, queues every chunk's task,
-- stores each chunk's recipients, and writes the campaign's record and idempotency key,
-- in one step. Calls push() (push.lua).
-- KEYS: idempotency key, campaign record, queue, wake list, unfinished set, chunks hash,
-- the metrics' counters.
-- ARGV: body digest, campaign id, now, template id, recipients, chunks, idempotency TTL,
-- record retention, push limits (2), trace id ('' for none); from ARGV[12], per chunk, its
-- envelope, its task id and its recipients (JSON).
-- Returns the idempotency key's value ('<digest>|<id>') if it was set already, else false.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local number = 0
for i = 12, #ARGV, 3 do
  push(KEYS[3], KEYS[4], KEYS[5], ARGV[i], ARGV[i + 1], ARGV[3], tonumber(ARGV[9]), ARGV[10])
  redis.call('HSET', KEYS[6], number, ARGV[i + 2])
  number = number + 1
end
redis.call('EXPIRE', KEYS[6], ARGV[8])
redis.call('HSET', KEYS[2], 'state', 'queued', 'template_id', ARGV[4], 'count', ARGV[5],
           'chunks', ARGV[6], 'created', ARGV[3], 'trace', ARGV[11])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[7])
redis.call('HINCRBY', KEYS[7], 'accepted:campaign', ARGV[5])
return false
