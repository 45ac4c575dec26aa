-- push(): the one way a store script queues work, prepended by notifier/store/scripts.py
-- to every script that calls it. Pushes one task envelope with a wake-up token for one
-- idle worker (notifier/broker/wake.py), and tracks it as unfinished, in the caller's
-- atomic step.
-- Arguments: queue, its wake list, its unfinished set (keys); the envelope; its member in
-- the unfinished set ('' queues the task untracked: a whole chunk parked by an older
-- version); now (its score); the most tokens a wake list keeps; the wake list's expiry.
local function push(queue, wake, unfinished, envelope, member, now, most, ttl)
  redis.call('LPUSH', queue, envelope)
  redis.call('LPUSH', wake, 1)
  redis.call('LTRIM', wake, 0, most - 1)
  redis.call('EXPIRE', wake, ttl)
  if member ~= '' then redis.call('ZADD', unfinished, now, member) end
end
