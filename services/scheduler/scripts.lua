-- Transitions of the scheduler. Each section from "--! name" is loaded as one script, with the
-- prelude put before it and, above that, FIRING_SEPARATOR and WORKFLOW_RUNNING (keys.LUA_CONSTANTS;
-- see common/lua.py). Every section binds its KEYS and ARGV to named locals.

--! prelude
-- Puts `id` in the sorted set `set` at `at` (Unix ms), or takes it out when `at` is '0' (none).
local function place(set, id, at)
  if at == '0' then
    redis.call('ZREM', set, id)
  else
    redis.call('ZADD', set, at, id)
  end
end

--! claim_due
-- KEYS: delayed set, moving set (keys.DelayedKeys). ARGV: now ms, hand-over deadline ms, limit.
-- Takes up to `limit` tasks into :moving with the new hand-over deadline: first those left there
-- past their deadline (stuck: a scheduler died or went unanswered while handing them over, so the
-- registry may have had them already), then due tasks of the delayed set. Returns the earliest time
-- (Unix ms) something else becomes due in either set ('' for none; '' too when `limit` tasks were
-- returned: go again at once), the number of stuck tasks, then their ids and the due tasks' ids.
local delayed, moving = KEYS[1], KEYS[2]
local now, deadline, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = redis.call('ZRANGEBYSCORE', moving, '-inf', now, 'LIMIT', 0, limit)
local stuck = #out
for _, id in ipairs(out) do
  redis.call('ZADD', moving, deadline, id)
end
if stuck < limit then
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit - stuck)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed, id)
    redis.call('ZADD', moving, deadline, id)
    out[#out + 1] = id
  end
end
local nxt = ''
if #out < limit then
  local a = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  local b = redis.call('ZRANGE', moving, 0, 0, 'WITHSCORES')
  if a[2] then nxt = a[2] end
  if b[2] and (nxt == '' or tonumber(b[2]) < tonumber(nxt)) then nxt = b[2] end
end
table.insert(out, 1, stuck)
table.insert(out, 1, nxt)
return out

--! schedule_put
-- KEYS: the schedule's hash, :all, :due. ARGV: id, definition, first occurrence ms (0 = none),
-- now ms, paused (0|1), keep_paused (0|1).
-- Creates or replaces a schedule. A definition equal to the stored one keeps its next occurrence
-- (putting the same schedule again changes nothing); a new one starts from its first occurrence.
-- With keep_paused an existing schedule keeps its paused flag. Returns {rev, paused}.
local schedule, all, due = KEYS[1], KEYS[2], KEYS[3]
local id, definition, first, now, paused, keep_paused = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local exists = redis.call('EXISTS', schedule) == 1
if exists and keep_paused == '1' then paused = redis.call('HGET', schedule, 'paused') end
local same = exists and redis.call('HGET', schedule, 'def') == definition
if not exists then redis.call('HSET', schedule, 'created', now, 'runs', 0, 'rev', 0) end
if not same then
  redis.call('HSET', schedule, 'def', definition)
  redis.call('HINCRBY', schedule, 'rev', 1)
end
redis.call('HSET', schedule, 'paused', paused)
redis.call('SADD', all, id)
if paused == '1' then first = '0' end
if first == '0' or not same or not redis.call('ZSCORE', due, id) then place(due, id, first) end
return {tonumber(redis.call('HGET', schedule, 'rev')), tonumber(paused)}

--! schedule_pause
-- KEYS: the schedule's hash, :due. ARGV: id, paused (0|1), rev the next occurrence was computed
-- from, next occurrence ms from now (0 = none).
-- Returns 0 for no such schedule, -1 when its definition changed meanwhile (compute again), else 1.
-- Resuming a running schedule changes nothing; a resumed one fires from its next future occurrence.
local schedule, due = KEYS[1], KEYS[2]
local id, paused, rev, nxt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', schedule) == 0 then return 0 end
if redis.call('HGET', schedule, 'rev') ~= rev then return -1 end
if redis.call('HGET', schedule, 'paused') == paused then return 1 end
redis.call('HSET', schedule, 'paused', paused)
place(due, id, paused == '1' and '0' or nxt)
return 1

--! schedule_delete
-- KEYS: the schedule's hash, :all, :due. ARGV: id. Returns 1 if it existed.
local schedule, all, due = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]
redis.call('ZREM', due, id)
redis.call('SREM', all, id)
return redis.call('DEL', schedule)

--! schedule_claim
-- KEYS: the schedule's hash, :due, :firing. ARGV: id, occurrence ms, rev, following occurrence ms
-- (0 = none left), hand-over deadline ms.
-- Claims one occurrence for the caller and advances the schedule, atomically: only while the
-- schedule's next occurrence is still `occurrence` and its definition still `rev`, so of several
-- schedulers that read the same occurrence exactly one claims it. The claimed occurrence waits in
-- :firing until its task is submitted. Returns 1 for the claimant, else 0.
local schedule, due, firing = KEYS[1], KEYS[2], KEYS[3]
local id, occurrence, rev, following, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local score = redis.call('ZSCORE', due, id)
if not score or tonumber(score) ~= tonumber(occurrence) then return 0 end
if redis.call('HGET', schedule, 'rev') ~= rev then return 0 end
place(due, id, following)
redis.call('HSET', schedule, 'last_run', occurrence)
redis.call('HINCRBY', schedule, 'runs', 1)
redis.call('ZADD', firing, deadline, id .. FIRING_SEPARATOR .. occurrence)
return 1

--! schedule_stuck
-- KEYS: :firing. ARGV: now ms, new deadline ms, limit.
-- Occurrences claimed by a scheduler that did not submit them by their deadline (it crashed):
-- returns them and moves their deadline, so one scheduler at a time submits them again.
local firing = KEYS[1]
local now, deadline, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local stuck = redis.call('ZRANGEBYSCORE', firing, '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(stuck) do redis.call('ZADD', firing, deadline, member) end
return stuck

--! schedule_fired
-- KEYS: the schedule's hash, :firing. ARGV: the member of :firing (keys.firing), task id.
-- The occurrence's task was submitted: remembered as the schedule's last task (unless the
-- schedule was deleted meanwhile), and the occurrence leaves :firing.
local schedule, firing = KEYS[1], KEYS[2]
local member, task_id = ARGV[1], ARGV[2]
if redis.call('EXISTS', schedule) == 1 then redis.call('HSET', schedule, 'last_task', task_id) end
return redis.call('ZREM', firing, member)

--! idem_confirm
-- KEYS: an idempotency key. ARGV: task id, the pending claim (PENDING .. task id), ms to keep it.
-- Written in the same pipeline as the task it names: the claim becomes the key's lasting value.
-- A claim that expired meanwhile is taken again, unless another submission holds the key now.
local key = KEYS[1]
local id, pending, keep = ARGV[1], ARGV[2], ARGV[3]
local held = redis.call('GET', key)
if held and held ~= pending and held ~= id then return 0 end
redis.call('SET', key, id, 'PX', keep)
return 1

--! idem_release
-- KEYS: an idempotency key. ARGV: task id ('' when a key naming it is kept), the pending claim.
-- The write of the task failed: the key is let go if it still names that task, so a retry of the
-- submission is admitted again instead of being answered with a task that does not exist. A write
-- whose answer was lost may have been applied: then only the pending claim is let go.
local key = KEYS[1]
local id, pending = ARGV[1], ARGV[2]
local held = redis.call('GET', key)
if held == pending or held == id then return redis.call('DEL', key) end
return 0

--! rate_slots
-- KEYS: the task name's next free slot. ARGV: now ms, interval ms, count.
-- Reserves `count` consecutive slots `interval` apart and returns the first (never before now).
local slot = KEYS[1]
local now, interval, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nxt = tonumber(redis.call('GET', slot) or '0')
if nxt < now then nxt = now end
local after = nxt + interval * count
redis.call('SET', slot, after, 'PX', after - now + 60000)
return nxt

--! step_done
-- KEYS: the workflow hash. ARGV: stage, member, result JSON, the member's traceparent (empty: not
-- kept; workflows.LINKS_MAX members keep theirs, for the callback's links).
-- A task of a workflow succeeded. O(1) whatever the size of the workflow: a group member's result
-- is recorded once (HSETNX) and counted down; a stage of one task, or a group with no member left,
-- is done, and a done stage moves the running workflow on, once. Returns -1 for no such workflow,
-- 0 for nothing to do (members left, the workflow past that stage or stopped), 1 when the stage
-- moved on now, 2 when it had moved on before: a repeated completion, whose caller submits the
-- next stage again, since that submission may have failed (its idempotency keys make it harmless).
local workflow = KEYS[1]
local stage, member, result, traceparent = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', workflow) == 0 then return -1 end
local left = redis.call('HGET', workflow, 'left:' .. stage)
if left then
  if redis.call('HSETNX', workflow, 'r:' .. stage .. ':' .. member, result) == 1 then
    if traceparent ~= '' then redis.call('HSET', workflow, 'tp:' .. stage .. ':' .. member, traceparent) end
    left = redis.call('HINCRBY', workflow, 'left:' .. stage, -1)
  else
    left = tonumber(left)
  end
  if left ~= 0 then return 0 end
end
if redis.call('HGET', workflow, 'state') ~= WORKFLOW_RUNNING then return 0 end
local from = tonumber(stage)
local current = tonumber(redis.call('HGET', workflow, 'stage'))
if current == from + 1 then return 2 end
if current ~= from then return 0 end
redis.call('HSET', workflow, 'stage', from + 1)
return 1

--! finish
-- KEYS: the workflow hash. ARGV: final state, expire ms.
-- Ends a running workflow, which from then on expires with the results. Returns 1 the first time only.
local workflow = KEYS[1]
local state, expire_ms = ARGV[1], ARGV[2]
if redis.call('HGET', workflow, 'state') ~= WORKFLOW_RUNNING then return 0 end
redis.call('HSET', workflow, 'state', state)
redis.call('PEXPIRE', workflow, expire_ms)
return 1
