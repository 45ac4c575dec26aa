-- Cancels a scheduled message or campaign: only while it is still `scheduled`, it leaves
-- the schedule and becomes `cancelled`, in one step, so it races with the mover
-- (move_due.lua) safely: one of the two finds it scheduled, the other finds it moved or
-- cancelled. A cancelled campaign's stored recipients are deleted: nothing will send them.
-- KEYS: the due set, the work hash, the record, its history (a message's) or its chunks
-- hash (a campaign's).
-- ARGV: the id, the record's field ('status' for a message, 'state' for a campaign),
-- now, the history entry, the record retention.
-- Returns the status or state found (false for an unknown id): 'scheduled' when this
-- call cancelled it.
local current = redis.call('HGET', KEYS[3], ARGV[2])
if not current or current ~= 'scheduled' then return current end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], 'cancelled', 'updated', ARGV[3])
-- Kept as long as a final record is, from now, no longer until its send_at.
redis.call('EXPIRE', KEYS[3], ARGV[5])
if ARGV[2] == 'status' then
  redis.call('RPUSH', KEYS[4], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
else
  redis.call('DEL', KEYS[4])
end
return current
