-- Transitions of the results service. Each section from "--! name" is loaded as one script, with
-- FIRST_FINAL_STATE, LAST_FINAL_STATE and EVENTS_KEPT (keys.LUA_CONSTANTS) put before it as locals
-- (see common/lua.py). Every script takes the KEYS of one task, keys.task_keys(id).

--! record
-- KEYS: state hash, event log (a LIST of serialized TaskEvents, oldest first).
-- ARGV: expire ms (from the task's final event on), then per event of this task, in order: state, progress_only (0|1), reopen (0|1),
-- serialized TaskEvent, serialized TaskSpec (or empty), submission time ms (with a spec).
-- Returns 1 or 0 per event (0: refused).
-- Nothing is written once the task is final: one result per task, whoever is late. Only a reopen
-- event (a dead task requeued) passes a final state.
-- The state hash keeps the state (s) and the latest event that changed it (e), which carries the
-- name, attempt, worker, time, result and error; p and t0 keep the spec submitted and when. Field
-- c counts every event appended: an event's cursor is its number, which stays valid when the log
-- is trimmed to its last EVENTS_KEPT events (once it is 100 over, so the trim is rare).
-- (A LIST, not a STREAM: a Redis 6.2 stream allocates a 4 KB node for its first entry.)
local state, log = KEYS[1], KEYS[2]
local expire_ms = ARGV[1]
local out = {}
for i = 2, #ARGV, 6 do
  local new_state, progress_only, reopen = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local event, spec, submitted = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local current = tonumber(redis.call('HGET', state, 's') or '0')
  if current >= FIRST_FINAL_STATE and current <= LAST_FINAL_STATE and reopen ~= '1' then
    out[#out + 1] = 0
  else
    if progress_only == '0' then redis.call('HSET', state, 's', new_state, 'e', event) end
    if spec ~= '' and redis.call('HSETNX', state, 'p', spec) == 1 then
      redis.call('HSET', state, 't0', submitted)
    end
    redis.call('HINCRBY', state, 'c', 1)
    if redis.call('RPUSH', log, event) > EVENTS_KEPT + 100 then redis.call('LTRIM', log, -EVENTS_KEPT, -1) end
    out[#out + 1] = 1
  end
end
-- Expiry applies to finished tasks only: a task waiting or running keeps its history.
local now_state = tonumber(redis.call('HGET', state, 's') or '0')
if now_state >= FIRST_FINAL_STATE and now_state <= LAST_FINAL_STATE then
  redis.call('PEXPIRE', state, expire_ms)
  redis.call('PEXPIRE', log, expire_ms)
else
  redis.call('PERSIST', state)
  redis.call('PERSIST', log)
end
return out

--! events_after
-- KEYS: state hash, event log. ARGV: number of events already seen, max count.
-- Returns the number of the event before the first one returned, then up to max count events.
local state, log = KEYS[1], KEYS[2]
local seen, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = tonumber(redis.call('HGET', state, 'c') or '0')
local first = total - redis.call('LLEN', log)
local from = math.max(seen, first)
local out = redis.call('LRANGE', log, from - first, from - first + max - 1)
table.insert(out, 1, from)
return out
