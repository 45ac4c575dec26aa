-- Moves due scheduled work onto the queues: each message or campaign whose due time has
-- come leaves the schedule, and its stored task envelopes are pushed (push(), push.lua,
-- as intake does) and its record goes from scheduled to queued, in one step. Several
-- movers may run at once: the first to run takes an entry out of the due set, and the
-- others no longer find it, so each entry is pushed at most once. An entry whose record
-- is no longer scheduled (cancelled, or gone past its retention) is dropped unpushed.
-- KEYS: the due set, the work hash; the messages queue, its wake list and unfinished
-- set; the campaigns queue, its wake list and unfinished set.
-- ARGV: now (Unix seconds; '' for Redis's own clock, one clock for every mover), the
-- most entries to move, push limits (2).
-- The work's record keys were spelled by notifier/store/keys.py at admission.
-- Returns {now, then the due time of each entry moved}.
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = string.format('%.3f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[2]))
local moved = {now}
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZREM', KEYS[1], id)
  local raw = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  if raw then
    local work = cjson.decode(raw)
    local field = work.q == 'm' and 'status' or 'state'
    if redis.call('HGET', work.r, field) == 'scheduled' then
      local q = work.q == 'm' and 3 or 6
      for _, task in ipairs(work.t) do
        push(KEYS[q], KEYS[q + 1], KEYS[q + 2], task[2], task[1], now, tonumber(ARGV[3]),
             ARGV[4])
      end
      if work.q == 'm' then
        redis.call('HSET', work.r, 'status', 'queued', 'updated', now)
        redis.call('RPUSH', work.h, '{"status":"queued","at":' .. now .. ',"detail":"due"}')
      else
        redis.call('HSET', work.r, 'state', 'queued', 'moved', now)
      end
      table.insert(moved, due[i + 1])
    end
  end
end
return moved
