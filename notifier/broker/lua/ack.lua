-- Forgets an acknowledged message: kombu's ZREM + HDEL, in one call.
-- KEYS: unacked, unacked_index. ARGV: the delivery tag.
-- Returns how many records were dropped (0 or 1).
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
