-- Cancels a campaign none of whose chunks has started: only while it is `queued` does it
-- become `cancelled`, in one step, and its stored recipients are deleted, so a chunk task
-- still on the queue finds nothing to send (and the reconciler drops its entry). A chunk
-- that started first moved the campaign to `sending` (begin_campaign.lua): then this
-- changes nothing. A `scheduled` campaign is cancelled by cancel_scheduled.lua instead,
-- which also takes it out of the schedule.
-- KEYS: the campaign's record, its chunks hash.
-- ARGV: now.
-- Returns 1 when this call cancelled it, else 0.
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancelled_at', ARGV[1])
redis.call('DEL', KEYS[2])
return 1
