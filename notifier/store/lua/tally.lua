-- tally(): adds what a sender measured (notifier/store/metrics.py, Tally) to the metrics
-- hashes, in the caller's atomic step; prepended by notifier/store/scripts.py to every
-- script that calls it.
-- Arguments: the position in KEYS of the first metrics hash (the counters; the histograms
-- follow, as metrics_keys() orders them) and the position in ARGV of the tally: a count,
-- then per entry the hash's offset from the first, its field and the amount (`sum`
-- fields add seconds, every other field a whole count).
-- Returns the position in ARGV just after the tally.
local function tally(first, at)
  local n = tonumber(ARGV[at])
  for i = at + 1, at + 3 * n, 3 do
    local key, field = KEYS[first + tonumber(ARGV[i])], ARGV[i + 1]
    if field == 'sum' then
      redis.call('HINCRBYFLOAT', key, field, ARGV[i + 2])
    else
      redis.call('HINCRBY', key, field, ARGV[i + 2])
    end
  end
  return at + 1 + 3 * n
end
