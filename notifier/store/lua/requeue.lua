-- Queues a failed, dead or deferred message again, only if it is still replayable and
-- kept its payload (a receipt's `failed` has none: the follower blocked us), so two
-- operators replaying at once queue it once; status, indexes and the queued task change
-- in one step, so a replay is never half done. Calls push() (push.lua).
-- KEYS: record, history, dead index, deferred index, queue, wake list, unfinished set.
-- ARGV: the three replayable statuses, now, the history entry, the message id, its
-- envelope, the push limits (2), the record retention.
-- Returns the old status, or nil (and then drops the id from the indexes, where it was
-- stale).
local status = redis.call('HGET', KEYS[1], 'status')
local payload = redis.call('HEXISTS', KEYS[1], 'payload')
redis.call('ZREM', KEYS[3], ARGV[6])
redis.call('ZREM', KEYS[4], ARGV[6])
if (status ~= ARGV[1] and status ~= ARGV[2] and status ~= ARGV[3]) or payload == 0 then
  return nil
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated', ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[10])
push(KEYS[5], KEYS[6], KEYS[7], ARGV[7], ARGV[6], ARGV[4], tonumber(ARGV[8]), ARGV[9])
return status
