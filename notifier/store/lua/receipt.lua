-- Applies a delivery receipt unless one already was: check and write in one step.
-- KEYS: the record, its history.
-- ARGV: the new status, now, WeChat's reason, the errmsg to keep ('' for none), the
-- history entry.
-- Returns 1 if the receipt was applied, else 0.
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'delivered' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated', ARGV[2], 'receipt', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'errmsg', ARGV[4]) end
redis.call('RPUSH', KEYS[2], ARGV[5])
return 1
