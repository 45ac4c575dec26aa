-- Replays a campaign's failures: picks from its failure list each recipient whose outcome
-- is still `dead` (and `failed` with an errcode, when asked: a receipt's `failed` has none
-- and is never replayed), stores them as new chunks of the campaign, with the shared
-- fields the record keeps, and queues a task per chunk by push() (push.lua), as intake
-- does. In the same step each picked recipient's outcome is cleared (it counts as queued
-- again) and its entries leave the failure list, so a replay running twice, or two at
-- once, queues nobody twice: the second finds no dead or failed recipient to pick. A
-- recipient still held by a stored chunk (one being sent, retrying others, or parked by the
-- daily quota) waits for a later replay: that chunk reads its recipients again on each run
-- and would send one whose outcome was cleared, a second time.
-- The campaign is `sending` again until its last recipient is final once more.
-- KEYS: the campaign's record, outcomes, failures, chunks hash, then the campaign queue,
-- its wake list and its unfinished set.
-- ARGV: now, '1' to replay `failed` recipients too ('' not), the number the first new chunk
-- takes (the record's `chunks` as read before), the recipients per chunk, the push limits
-- (2), the record retention, the campaign id; from ARGV[9], per chunk that may be needed,
-- its envelope and its task id (its member in the unfinished set).
-- Returns how many recipients were queued; -1 for an unknown campaign; -2 when the
-- record's `chunks` moved or more envelopes are needed (the caller reads and tries again).
local meta = redis.call('HMGET', KEYS[1], 'state', 'chunks', 'shared')
if not meta[1] then return -1 end
-- A cancelled campaign sends nobody; without shared fields no failure can be replayed
-- (every failure listed with its own data brought them: set_outcomes.lua).
if meta[1] == 'cancelled' or not meta[3] then return 0 end
if meta[2] ~= ARGV[3] then return -2 end
-- Every recipient of a chunk still stored: its chunk has not ended (a chunk that ends is
-- deleted from the hash); empty once the campaign is finished.
local held = {}
for _, raw in ipairs(redis.call('HVALS', KEYS[4])) do
  local ok, chunk = pcall(cjson.decode, raw)
  if ok and type(chunk) == 'table' and type(chunk.recipients) == 'table' then
    for _, recipient in ipairs(chunk.recipients) do held[tostring(recipient[1])] = true end
  end
end
local entries = redis.call('LRANGE', KEYS[3], 0, -1)
local indexes, picked, chosen = {}, {}, {}
local moves = {dead = 0, failed = 0}
for n, raw in ipairs(entries) do
  local ok, entry = pcall(cjson.decode, raw)
  local index = ok and type(entry) == 'table' and type(entry.id) == 'string'
                and string.match(entry.id, '%-(%d+)$')
  indexes[n] = index
  -- Only entries that kept their recipient's own data (null for none) can be resent as
  -- they were first sent; one per recipient, however often it is listed.
  if index and not chosen[index] and not held[index] and entry.data ~= nil
     and type(entry.touser) == 'string' and entry.touser ~= '' then
    local outcome = redis.call('HGET', KEYS[2], index)
    local status = outcome and string.match(outcome, '^[^|]+')
    local errcode = outcome and string.match(outcome, '([^|]*)$')
    if status == 'dead' or (ARGV[2] == '1' and status == 'failed' and errcode ~= '') then
      chosen[index] = true
      moves[status] = moves[status] + 1
      table.insert(picked, {tonumber(index), entry.touser, entry.data})
    end
  end
end
if #picked == 0 then return 0 end
local size = tonumber(ARGV[4])
local needed = math.ceil(#picked / size)
if needed > (#ARGV - 8) / 2 then return -2 end
local first = tonumber(ARGV[3])
-- The chunk as intake stores it (chunk_payloads): the batch, the shared fields, then
-- [index, touser, own data or null] per recipient.
local head = '{"batch":' .. cjson.encode(ARGV[8]) .. ',' .. string.sub(meta[3], 2, -2)
             .. ',"recipients":'
for c = 0, needed - 1 do
  local recipients = {}
  for j = c * size + 1, math.min((c + 1) * size, #picked) do
    table.insert(recipients, picked[j])
  end
  redis.call('HSET', KEYS[4], first + c, head .. cjson.encode(recipients) .. '}')
  push(KEYS[5], KEYS[6], KEYS[7], ARGV[9 + 2 * c], ARGV[10 + 2 * c], ARGV[1],
       tonumber(ARGV[5]), ARGV[6])
end
redis.call('EXPIRE', KEYS[4], ARGV[7])
for index in pairs(chosen) do redis.call('HDEL', KEYS[2], index) end
-- The failure list keeps every entry of a recipient not replayed, in order.
local kept = {}
for n, raw in ipairs(entries) do
  if not (indexes[n] and chosen[indexes[n]]) then table.insert(kept, raw) end
end
redis.call('DEL', KEYS[3])
for j = 1, #kept, 1000 do
  redis.call('RPUSH', KEYS[3], unpack(kept, j, math.min(j + 999, #kept)))
end
if #kept > 0 then redis.call('EXPIRE', KEYS[3], ARGV[7]) end
for status, n in pairs(moves) do
  if n > 0 then redis.call('HINCRBY', KEYS[1], 'n:' .. status, -n) end
end
redis.call('HSET', KEYS[1], 'chunks', first + needed, 'state', 'sending')
redis.call('HDEL', KEYS[1], 'finished_at')
return #picked
