-- Moves parked campaign chunks to the queue: each leaves the parked list only as its task
-- is pushed, so two releases at once queue a chunk once. Calls push() (push.lua).
-- KEYS: the parked list, queue, wake list, unfinished set.
-- ARGV: now, the push limits (2); then per chunk its parked text, its envelope and its
-- task id ('' for a whole chunk: not tracked).
-- Returns how many chunks it moved.
local moved = 0
for i = 4, #ARGV, 3 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    push(KEYS[2], KEYS[3], KEYS[4], ARGV[i + 1], ARGV[i + 2], ARGV[1], tonumber(ARGV[2]),
         ARGV[3])
    moved = moved + 1
  end
end
return moved
