-- A chunk starts: the campaign moves from `queued` to `sending`, in the same step that
-- reads what the chunk needs, so a cancel (cancel_campaign.lua) and a chunk's start never
-- both win: a campaign cancelled first stays cancelled and its chunks send nobody.
-- KEYS: the campaign's record.
-- Returns {queued at, trace, state} as the record holds them after this step, or false
-- when the campaign is unknown (or expired). Queued at is the 202's time, or for a
-- scheduled campaign the time the mover queued it, so its wait is not counted as latency.
local meta = redis.call('HMGET', KEYS[1], 'created', 'trace', 'state', 'moved')
if not meta[1] then return false end
if meta[3] == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'sending')
  meta[3] = 'sending'
end
return {meta[4] or meta[1], meta[2], meta[3]}
