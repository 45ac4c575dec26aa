-- Queues again what a broker lost: each candidate still unfinished and last seen no later
-- than the cutoff is pushed again (a message's record back to queued, with a history
-- entry), unless its message is being sent (its claim is held); one that became final,
-- or whose chunk finished, leaves the unfinished set. Calls push() (push.lua).
-- KEYS: queue, wake list, unfinished set; then three per candidate: a message's record,
-- history and claim, or a chunk's chunks hash, its campaign's record, its chunks hash.
-- ARGV: cutoff, now, push limits (2), the history entry, the record retention; then four
-- per candidate: its member, its kind ('m' message, 'c' chunk), its chunk number (''
-- for a message), its envelope.
-- Returns {queued, dropped}.
local cutoff, now, entry = tonumber(ARGV[1]), ARGV[2], ARGV[5]
local final = {sent = true, delivered = true, failed = true, dead = true, deferred = true}
local queued, dropped = 0, 0
for c = 0, (#KEYS - 3) / 3 - 1 do
  local k, a = 4 + 3 * c, 7 + 4 * c
  local member = ARGV[a]
  local score = redis.call('ZSCORE', KEYS[3], member)
  if score and tonumber(score) <= cutoff then
    local gone, busy
    if ARGV[a + 1] == 'm' then
      local status = redis.call('HGET', KEYS[k], 'status')
      gone = not status or final[status]
      busy = redis.call('EXISTS', KEYS[k + 2]) == 1
    else
      gone = redis.call('HEXISTS', KEYS[k], ARGV[a + 2]) == 0
      busy = false
    end
    if gone then
      redis.call('ZREM', KEYS[3], member)
      dropped = dropped + 1
    elseif not busy then
      push(KEYS[1], KEYS[2], KEYS[3], ARGV[a + 3], member, now, tonumber(ARGV[3]), ARGV[4])
      if ARGV[a + 1] == 'm' then
        redis.call('HSET', KEYS[k], 'status', 'queued', 'updated', now)
        redis.call('RPUSH', KEYS[k + 1], entry)
        redis.call('EXPIRE', KEYS[k + 1], ARGV[6])
      end
      queued = queued + 1
    end
  end
end
return {queued, dropped}
