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

--! schedule_put
-- KEYS[1] the schedule's hash, KEYS[2] :all, KEYS[3] :due. ARGV: id, definition, first occurrence
-- (0 = none), now ms, paused (0|1), keep_paused (0|1).
-- Creates or replaces a schedule. A definition equal to the stored one keeps its next occurrence
-- (putting the same schedule again changes nothing); a new one starts from its first occurrence.
-- With keep_paused an existing schedule keeps its paused flag. Returns {rev, paused}.
local exists = redis.call('EXISTS', KEYS[1]) == 1
local paused = ARGV[5]
if exists and ARGV[6] == '1' then paused = redis.call('HGET', KEYS[1], 'paused') end
local same = exists and redis.call('HGET', KEYS[1], 'def') == ARGV[2]
if not exists then redis.call('HSET', KEYS[1], 'created', ARGV[4], 'runs', 0, 'rev', 0) end
if not same then
  redis.call('HSET', KEYS[1], 'def', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
end
redis.call('HSET', KEYS[1], 'paused', paused)
redis.call('SADD', KEYS[2], ARGV[1])
if paused == '1' or ARGV[3] == '0' then
  redis.call('ZREM', KEYS[3], ARGV[1])
elseif not same or not redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return {tonumber(redis.call('HGET', KEYS[1], 'rev')), tonumber(paused)}

--! schedule_pause
-- KEYS[1] the schedule's hash, KEYS[2] :due. ARGV: id, paused (0|1), rev the next occurrence was
-- computed from, next occurrence from now (0 = none).
-- Returns 0 for no such schedule, -1 when its definition changed meanwhile (compute again), else 1.
-- Resuming a running schedule changes nothing; a resumed one fires from its next future occurrence.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'rev') ~= ARGV[3] then return -1 end
local was = redis.call('HGET', KEYS[1], 'paused')
if was == ARGV[2] then return 1 end
redis.call('HSET', KEYS[1], 'paused', ARGV[2])
if ARGV[2] == '1' or ARGV[4] == '0' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
return 1

--! schedule_delete
-- KEYS[1] the schedule's hash, KEYS[2] :all, KEYS[3] :due. ARGV: id. Returns 1 if it existed.
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])

--! schedule_claim
-- KEYS[1] the schedule's hash, KEYS[2] :due, KEYS[3] :firing. ARGV: id, occurrence ms, rev,
-- following occurrence ms (0 = none left), hand-over deadline ms.
-- Claims one occurrence for the caller and advances the schedule, atomically: only while the
-- schedule's next occurrence is still `occurrence` and its definition still `rev`, so of several
-- schedulers that read the same occurrence exactly one claims it. The claimed occurrence waits in
-- :firing until its task is submitted. Returns 1 for the claimant, else 0.
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[1], 'rev') ~= ARGV[3] then return 0 end
if ARGV[4] == '0' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
redis.call('HSET', KEYS[1], 'last_run', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'runs', 1)
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1] .. '|' .. ARGV[2])
return 1

--! schedule_stuck
-- KEYS[1] :firing. ARGV: now ms, new deadline ms, limit.
-- Occurrences claimed by a scheduler that did not submit them by their deadline (it crashed):
-- returns them and moves their deadline, so one scheduler at a time submits them again.
local stuck = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(stuck) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return stuck

--! schedule_fired
-- KEYS[1] the schedule's hash, KEYS[2] :firing. ARGV: "id|occurrence", task id.
-- The occurrence's task was submitted: remembered as the schedule's last task (unless the
-- schedule was deleted meanwhile), and the occurrence leaves :firing.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_task', ARGV[2]) end
return redis.call('ZREM', KEYS[2], ARGV[1])

--! rate_slots
-- KEYS[1] the task name's next free slot. ARGV: now ms, interval ms, count.
-- Reserves `count` consecutive slots `interval` apart and returns the first (never before now).
local now = tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt < now then nxt = now end
local after = nxt + tonumber(ARGV[2]) * tonumber(ARGV[3])
redis.call('SET', KEYS[1], after, 'PX', after - now + 60000)
return nxt

--! member_done
-- KEYS[1] the workflow hash. ARGV: stage, member, result JSON, member count, expire ms, the
-- member's traceparent (or empty).
-- Records a group member's result once; when it was the last one, returns the results in member
-- order followed by the members' traceparents (the stage is done), else an empty list. A repeated
-- completion changes nothing.
if redis.call('HSETNX', KEYS[1], 'r:' .. ARGV[1] .. ':' .. ARGV[2], ARGV[3]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'tp:' .. ARGV[1] .. ':' .. ARGV[2], ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local left = redis.call('HINCRBY', KEYS[1], 'left:' .. ARGV[1], -1)
if left ~= 0 then return {} end
local out = {}
for i = 0, tonumber(ARGV[4]) - 1 do
  out[#out + 1] = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1] .. ':' .. i)
end
for i = 0, tonumber(ARGV[4]) - 1 do
  out[#out + 1] = redis.call('HGET', KEYS[1], 'tp:' .. ARGV[1] .. ':' .. i) or ''
end
return out

--! advance
-- KEYS[1] the workflow hash. ARGV: from stage. Moves the workflow from that stage to the next,
-- once: returns 1 for the caller that moved it, 0 if it had moved (or stopped) already.
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'stage')) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'stage', tonumber(ARGV[1]) + 1)
return 1

--! finish
-- KEYS[1] the workflow hash. ARGV: final state. Returns 1 the first time only.
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return 1
