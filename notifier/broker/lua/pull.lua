-- Takes up to ARGV[1] messages, highest priority first (the order BRPOP uses), and
-- records each as unacknowledged exactly as kombu does, in the same atomic step. Each
-- is recorded before it is popped, so a write Redis refuses (out of memory) leaves it
-- in its queue: a message is never out of its queue without being in the unacked set.
-- It stops at a message it cannot read, leaving it for kombu's own path. A queue it
-- empties has its wake-up tokens cleared: they would only wake workers for nothing.
-- KEYS: unacked, unacked_index, ARGV[3] queues, then each queue's wake list.
-- ARGV: most messages, now (the unacked index's score), number of queues.
-- Returns {stopped at such a message (0 or 1), key, tag, message, key, tag, ...}.
local most, now, queues = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local out = {0}
for i = 3, 2 + queues do
  while #out <= 3 * most do
    local item = redis.call('LINDEX', KEYS[i], -1)
    if not item then
      redis.call('DEL', KEYS[i + queues])
      break
    end
    local ok, m = pcall(cjson.decode, item)
    local p = ok and type(m) == 'table' and m['properties']
    local tag = type(p) == 'table' and p['delivery_tag']
    local info = type(p) == 'table' and p['delivery_info']
    if type(tag) ~= 'string' or type(info) ~= 'table' or type(info['exchange']) ~= 'string'
        or type(info['routing_key']) ~= 'string' then
      out[1] = 1
      return out
    end
    redis.call('ZADD', KEYS[2], now, tag)
    redis.call('HSET', KEYS[1], tag, '[' .. item .. ',' .. cjson.encode(info['exchange'])
      .. ',' .. cjson.encode(info['routing_key']) .. ']')
    redis.call('RPOP', KEYS[i])
    out[#out + 1] = KEYS[i]
    out[#out + 1] = tag
    out[#out + 1] = item
  end
end
return out
