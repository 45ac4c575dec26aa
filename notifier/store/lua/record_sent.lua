-- Records an accepted send in one round trip: status, msgid and its reverse mapping, the
-- claim released, the payload and last error dropped, the message no longer unfinished.
-- KEYS: the record, its history, its claim, the msgid key, the early receipt's key, the
-- unfinished set; the metrics hashes (counters, then histograms).
-- ARGV: now, the msgid, the history entry, record retention, the message id; then the
-- sender's tally (tally.lua).
-- Returns a receipt that arrived early, if any.
redis.call('DEL', KEYS[3])
-- Written anew, not trimmed: a hash that once held the payload stays in Redis's larger
-- encoding, and a sent record is kept for days.
local attempts = redis.call('HGET', KEYS[1], 'attempts')
local before = redis.call('HGET', KEYS[1], 'status')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'sent', 'updated', ARGV[1], 'msgid', ARGV[2])
if attempts then redis.call('HSET', KEYS[1], 'attempts', attempts) end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[4])
redis.call('ZREM', KEYS[6], ARGV[5])
-- Counted on the change only: a second copy recording the same send counts nothing.
if before ~= 'sent' and before ~= 'delivered' then redis.call('HINCRBY', KEYS[7], 'sent', 1) end
tally(7, 6)
return redis.call('GETDEL', KEYS[5])
