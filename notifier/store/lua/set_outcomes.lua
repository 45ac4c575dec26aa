-- Sets the outcomes of several recipients and moves the campaign's counters with them, in
-- one atomic step, and marks the chunk seen in its unfinished set, so a chunk still being
-- sent is not queued again. The campaign's stored chunks live as long as its outcomes.
-- Each change of outcome moves the fleet's counters too (notifier/store/metrics.py).
-- The step that makes the last recipient final (sent, delivered, failed or dead; not
-- deferred) also sets the campaign's state `finished` and its `finished_at`. A failure
-- entry keeps its recipient's own data; the shared fields it needs for a replay are kept
-- once, in the record, by the first step that lists a failure. A chunk's last outcomes
-- end it in the same step (out of the unfinished set, its stored recipients deleted), so
-- no replay ever sees a finished campaign with a chunk that has not ended.
-- KEYS: campaign record, outcomes, failures, unfinished set, chunks hash, the metrics
-- hashes (counters, then histograms); then per sent recipient its msgid key and its early
-- receipt's key.
-- ARGV: record retention, the chunk's member in the unfinished set ('' for none), now,
-- the chunk's shared fields (JSON; '' when unknown), '1' when the chunk ends with these
-- outcomes ('' not), the sender's tally (tally.lua); then six per recipient: its field, its encoded outcome,
-- its failure entry (or ''), the position in KEYS of its msgid key (or 0), the recipient
-- id to point it at so its delivery receipt finds it, and the position of the key where a
-- receipt that outran the send waits (or 0).
-- Returns those early receipts as a flat list of field, receipt.
local ttl = ARGV[1]
local moves = {}
local early = {}
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[4], 'XX', ARGV[3], ARGV[2]) end
local final = {sent = true, delivered = true, failed = true, dead = true}
local counts = {}
local function count(field) counts[field] = (counts[field] or 0) + 1 end
for i = tally(6, 6), #ARGV, 6 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  local old_status = old and string.match(old, '^[^|]+') or nil
  local new_status = string.match(ARGV[i + 1], '^[^|]+')
  -- A final outcome stays final: a second copy of a chunk never undoes the first's.
  if old_status and final[old_status] and not final[new_status] then
    new_status = old_status
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  if old_status ~= new_status then
    if old_status then moves[old_status] = (moves[old_status] or 0) - 1 end
    moves[new_status] = (moves[new_status] or 0) + 1
    -- Only on a change: a write sent again after its reply was lost lists nothing twice.
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', KEYS[3], ARGV[i + 2])
      -- A listed failure can be replayed only with the shared fields: kept with it.
      if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[1], 'shared', ARGV[4]) end
    end
    -- A send's outcomes only: a receipt's `failed` carries no errcode, and is not counted.
    local errcode = string.match(ARGV[i + 1], '([^|]*)$')
    if new_status == 'sent' or new_status == 'dead' then count(new_status) end
    if new_status == 'failed' and errcode ~= '' then count('failed:' .. errcode) end
  end
  -- Each retry once: its outcome names its attempt, so a write sent again matches `old`.
  if new_status == 'retrying' and old ~= ARGV[i + 1] then count('retries') end
  local k = tonumber(ARGV[i + 3])
  if k > 0 then redis.call('SET', KEYS[k], ARGV[i + 4], 'EX', ttl) end
  local r = tonumber(ARGV[i + 5])
  if r > 0 then
    local receipt = redis.call('GETDEL', KEYS[r])
    if receipt then
      table.insert(early, ARGV[i])
      table.insert(early, receipt)
    end
  end
end
for field, n in pairs(counts) do redis.call('HINCRBY', KEYS[6], field, n) end
local moved = false
for status, n in pairs(moves) do
  if n ~= 0 then
    redis.call('HINCRBY', KEYS[1], 'n:' .. status, n)
    moved = true
  end
end
if moved then
  -- Finished once every recipient is final; a deferred one is parked, not final. A
  -- receipt moves sent to delivered or failed, which leaves the final total as it was.
  local meta = redis.call('HMGET', KEYS[1], 'count', 'state', 'n:sent', 'n:delivered',
                          'n:failed', 'n:dead')
  local done = 0
  for j = 3, 6 do done = done + (tonumber(meta[j]) or 0) end
  local state = meta[2]
  if tonumber(meta[1]) and done >= tonumber(meta[1]) and state ~= 'finished'
     and state ~= 'cancelled' then
    redis.call('HSET', KEYS[1], 'state', 'finished', 'finished_at', ARGV[3])
  end
end
if ARGV[5] == '1' and ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[4], ARGV[2])
  redis.call('HDEL', KEYS[5], string.match(ARGV[2], '%.(%d+)$'))
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], ttl) end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[1], ttl)
return early
