"""The Lua scripts behind message state: each check-and-write happens in one atomic step."""

from notifier.store.unfinished import PUSH_LUA

# Starts an attempt in one round trip: skip a final or deferred message, take the claim,
# count it, and mark it seen in the unfinished set (KEYS[3]). Returns {attempts, status,
# payload} when claimed, {0, status} when final or deferred (unknown: ''), {-1, ttl} when
# another worker holds the claim.
BEGIN = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'sent' or status == 'delivered' or status == 'failed' or status == 'dead' then
  redis.call('ZREM', KEYS[3], ARGV[3])
  return {0, status}
end
-- Deferred waits for the quota's reset; only its requeue (REQUEUE) sends it again.
if status == 'deferred' then return {0, status} end
if not status then return {0, ''} end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return {-1, tostring(redis.call('TTL', KEYS[2]))}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], 'XX', ARGV[4], ARGV[3])
return {attempts, status, redis.call('HGET', KEYS[1], 'payload') or ''}
"""

# Records an accepted send in one round trip: status, msgid and its reverse mapping, the
# claim released, the payload and last error dropped, the message no longer unfinished.
# Returns a receipt that arrived early, if any.
RECORD_SENT = """
redis.call('DEL', KEYS[3])
-- Written anew, not trimmed: a hash that once held the payload stays in Redis's larger
-- encoding, and a sent record is kept for days.
local attempts = redis.call('HGET', KEYS[1], 'attempts')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'sent', 'updated', ARGV[1], 'msgid', ARGV[2])
if attempts then redis.call('HSET', KEYS[1], 'attempts', attempts) end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[4])
redis.call('ZREM', KEYS[6], ARGV[5])
return redis.call('GETDEL', KEYS[5])
"""

# Applies a delivery receipt unless one already was: check and write in one step.
RECEIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'delivered' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated', ARGV[2], 'receipt', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'errmsg', ARGV[4]) end
redis.call('RPUSH', KEYS[2], ARGV[5])
return 1
"""

# Queues a failed, dead or deferred message again, only if it is still replayable and
# kept its payload (a receipt's `failed` has none: the follower blocked us), so two
# operators replaying at once queue it once; status, indexes and the queued task change
# in one step, so a replay is never half done. Returns the old status, or nil (and then
# drops the id from the indexes, where it was stale).
# KEYS: record, history, dead index, deferred index, queue, wake list, unfinished set.
REQUEUE = (
    PUSH_LUA
    + """
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
"""
)
