-- Admits one campaign: unless its webhook-id was used before, queues every chunk's task
-- (or, when it has a send_at, enters the campaign once in the schedule instead), stores
-- each chunk's recipients, and writes the campaign's record and idempotency key, in one
-- step. Calls push() (push.lua).
-- KEYS: idempotency key, campaign record, queue, wake list, unfinished set, chunks hash,
-- the metrics' counters, the schedule's due set, its work hash.
-- ARGV: body digest, campaign id, now, template id, recipients, chunks, idempotency TTL,
-- record retention, push limits (2), trace id ('' for none), due time ('' to queue now),
-- the scheduled work (JSON with every chunk's envelope, notifier/store/schedule.py),
-- send_at as signed; from ARGV[15], per chunk, its envelope, its task id and its
-- recipients (JSON; the envelope '' when scheduled: the work holds it).
-- Returns the idempotency key's value ('<digest>|<id>') if it was set already, else false.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local scheduled = ARGV[12] ~= ''
local number = 0
for i = 15, #ARGV, 3 do
  if not scheduled then
    push(KEYS[3], KEYS[4], KEYS[5], ARGV[i], ARGV[i + 1], ARGV[3], tonumber(ARGV[9]), ARGV[10])
  end
  redis.call('HSET', KEYS[6], number, ARGV[i + 2])
  number = number + 1
end
redis.call('EXPIRE', KEYS[6], ARGV[8])
local state = 'queued'
if scheduled then
  -- One member for the whole campaign: not unfinished until the mover pushes its chunks.
  redis.call('HSET', KEYS[9], ARGV[2], ARGV[13])
  redis.call('ZADD', KEYS[8], ARGV[12], ARGV[2])
  state = 'scheduled'
  redis.call('HSET', KEYS[2], 'send_at', ARGV[14])
end
redis.call('HSET', KEYS[2], 'state', state, 'template_id', ARGV[4], 'count', ARGV[5],
           'chunks', ARGV[6], 'created', ARGV[3], 'trace', ARGV[11])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[7])
redis.call('HINCRBY', KEYS[7], 'accepted:campaign', ARGV[5])
return false
