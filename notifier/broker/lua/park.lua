-- Moves an unacknowledged record that cannot be delivered (Lua's JSON reader is more
-- lenient than Python's) to a list an operator can read, so it neither comes back
-- forever nor stops kombu's restore sweep at it.
-- KEYS: unacked, unacked_index, the unreadable list. ARGV: the delivery tag.
-- Returns 1 if there was a record, else 0.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then redis.call('LPUSH', KEYS[3], raw) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return raw and 1 or 0
