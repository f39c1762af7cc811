-- Transitions of the results service. Each section from "--! name" is loaded as one script.

--! record
-- KEYS[1] state hash, KEYS[2] event log (a LIST of serialized TaskEvents, oldest first).
-- ARGV: expire ms, then per event of this task, in order: state, progress_only (0/1), reopen (0/1),
-- serialized TaskEvent, serialized TaskSpec (or empty), submission time ms (with a spec).
-- Returns 1 or 0 per event (0: refused).
-- Nothing is written once the task is final (states 5..9): one result per task, whoever is late.
-- Only a reopen event (a dead task requeued) passes a final state.
-- The state hash keeps the state (s) and the latest event that changed it (e), which carries the
-- name, attempt, worker, time, result and error; p and t0 keep the spec submitted and when. Field c counts every event appended: an event's
-- cursor is its number, which stays valid when the log is trimmed to its last 1000 events.
-- (A LIST, not a STREAM: a Redis 6.2 stream allocates a 4 KB node for its first entry.)
local out = {}
for i = 2, #ARGV, 6 do
  local cur = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
  if cur >= 5 and cur <= 9 and ARGV[i + 2] ~= '1' then
    out[#out + 1] = 0
  else
    if ARGV[i + 1] == '0' then redis.call('HSET', KEYS[1], 's', ARGV[i], 'e', ARGV[i + 3]) end
    if ARGV[i + 4] ~= '' and redis.call('HSETNX', KEYS[1], 'p', ARGV[i + 4]) == 1 then
      redis.call('HSET', KEYS[1], 't0', ARGV[i + 5])
    end
    redis.call('HINCRBY', KEYS[1], 'c', 1)
    if redis.call('RPUSH', KEYS[2], ARGV[i + 3]) > 1100 then redis.call('LTRIM', KEYS[2], -1000, -1) end
    out[#out + 1] = 1
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return out

--! events_after
-- KEYS[1] state hash, KEYS[2] event log. ARGV: number of events already seen, max count.
-- Returns the number of the event before the first one returned, then up to max count events.
local total = tonumber(redis.call('HGET', KEYS[1], 'c') or '0')
local first = total - redis.call('LLEN', KEYS[2])
local from = math.max(tonumber(ARGV[1]), first)
local out = redis.call('LRANGE', KEYS[2], from - first, from - first + tonumber(ARGV[2]) - 1)
table.insert(out, 1, from)
return out
