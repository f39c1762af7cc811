-- Transitions of the scheduler. Each section from "--! name" is loaded as one script.

--! claim_due
-- KEYS[1] delayed, KEYS[2] moving. ARGV: now ms, hand-over deadline ms, limit.
-- Moves due tasks to :moving and returns their ids. Tasks left in :moving past their deadline
-- (a scheduler died while handing them over) become due again first.
local stuck = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(stuck) do
  redis.call('ZADD', KEYS[1], ARGV[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[2], id)
end
return due

--! rate_slots
-- KEYS[1] the task name's next free slot. ARGV: now ms, interval ms, count.
-- Reserves `count` consecutive slots `interval` apart and returns the first (never before now).
local now = tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt < now then nxt = now end
local after = nxt + tonumber(ARGV[2]) * tonumber(ARGV[3])
redis.call('SET', KEYS[1], after, 'PX', after - now + 60000)
return nxt
