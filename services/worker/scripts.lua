-- Transitions of the worker registry. Each section below, from "--! name" to the next, is loaded as
-- one script, with the prelude put before it and, above that, the constants BAND_BASE and
-- BAND_DIGITS (keys.LUA_CONSTANTS; see common/lua.py). Every script takes the KEYS of one queue,
-- keys.queue_keys(q), which the prelude binds to locals named as the fields of keys.QueueKeys.
--
-- Redis does not undo what a script wrote before a command of it failed (a key of the wrong type,
-- say). So a script that moves a task writes its new place first and leaves the old one after:
-- a failure in between leaves the task in both places (its lease then ends or expires, and the
-- fencing token keeps a second delivery from writing twice), never in neither. A submission stores
-- a new task, then queues or leases it: when that fails, `placed` deletes what it stored.

--! prelude
-- KEYS: ready, task, leases, tokens, deliveries, cancel, fence, dead, paused, retrying, retry_at
local ready, task, leases, tokens, deliveries = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local cancel, fence, dead, paused, retrying, retry_at = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]

-- The functions below are built anew on every call of a script that calls them (a closure costs
-- Redis about as much as a short command; common/lua.py leaves out those a script does not call):
-- the prelude keeps those several scripts share that take more than one command or some string
-- work; a step of one command (publishing a wake-up, extending a lease, forgetting a task) is
-- written out where it is used.

-- A task value in :task is its band in BAND_DIGITS digits, then the serialized Task: callers send
-- it so (keys.task_value), so that no script formats a band or concatenates a task.

-- Ready at the end of the band of its task value (its arrival is the next number of :fence).
local function ready_last(id, value)
  local band = tonumber(string.sub(value, 1, BAND_DIGITS))
  redis.call('ZADD', ready, band * BAND_BASE + redis.call('INCR', fence), id)
end

-- Ready at the front of the band of its task value.
local function ready_first(id, value)
  redis.call('ZADD', ready, tonumber(string.sub(value, 1, BAND_DIGITS)) * BAND_BASE, id)
end

-- For each group of `step` ARGV from `first` that opens with (id, token): calls held(id, i) when
-- the token is the current lease token of id (i: the group's first index), else stale(id), if
-- given. Returns how many were held.
local function each_held(first, step, held, stale)
  local n = 0
  for i = first, #ARGV, step do
    local id = ARGV[i]
    if redis.call('HGET', tokens, id) == ARGV[i + 1] then
      held(id, i)
      n = n + 1
    elseif stale then
      stale(id)
    end
  end
  return n
end

-- A lease's end forgets a Cancel asked while it ran (keys.py :cancel): the task has ended, or
-- goes on as a new attempt or from the dead-letter set by a caller's own decision.
local function end_lease(id)
  redis.call('HDEL', tokens, id)
  redis.call('ZREM', leases, id)
  redis.call('HDEL', cancel, id)
end

-- Leases task id (its task value given) until deadline: appends id, token, delivery, value to out.
local function lease(id, value, deadline, out)
  local token = redis.call('INCR', fence)
  redis.call('HSET', tokens, id, token)
  redis.call('ZADD', leases, deadline, id)
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = redis.call('HINCRBY', deliveries, id, 1)
  out[#out + 1] = value
end

-- After a task just stored (HSETNX) was queued or leased under pcall (ok, err: what pcall gave):
-- when Redis refused a write of that, the task's value and whatever the lease wrote are deleted
-- again and the call fails, so that a new submission of the same id is not taken as known.
local function placed(ok, err, id)
  if ok then return end
  redis.call('HDEL', task, id)
  redis.pcall('HDEL', tokens, id)
  redis.pcall('ZREM', leases, id)
  redis.pcall('HDEL', deliveries, id)
  error(err)
end

--! enqueue
-- KEYS: the queue's (prelude). ARGV: queue, notify channel, then pairs (id, task value).
-- Queues tasks at the end of their band; a task already known is skipped. Returns how many were
-- added. An empty channel publishes nothing.
local queue, channel = ARGV[1], ARGV[2]
local added = 0
for i = 3, #ARGV, 2 do
  local id, value = ARGV[i], ARGV[i + 1]
  if redis.call('HSETNX', task, id, value) == 1 then
    local ok, err = pcall(ready_last, id, value)
    placed(ok, err, id)
    added = added + 1
  end
end
if channel ~= '' and added > 0 then redis.call('PUBLISH', channel, queue) end
return added

--! dispatch
-- KEYS: the queue's (prelude). ARGV: now ms, lease ms, max count[, queue, notify channel].
-- Leases up to max count ready tasks. Returns a flat list: id, token, delivery, task value, ...
-- Nothing while the queue is paused. With a queue and channel, publishes the queue when ready tasks
-- are left.
local now, lease_ms, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local queue, channel = ARGV[4], ARGV[5]
if redis.call('EXISTS', paused) == 1 then return {} end
local ids = redis.call('ZRANGE', ready, 0, max - 1)
if #ids == 0 then return {} end
local deadline = now + lease_ms
local out = {}
for _, id in ipairs(ids) do
  local value = redis.call('HGET', task, id)
  if value then lease(id, value, deadline, out) end
end
redis.call('ZREM', ready, unpack(ids))
if channel and redis.call('ZCARD', ready) > 0 then redis.call('PUBLISH', channel, queue) end
return out

--! enqueue_dispatch
-- KEYS: the queue's (prelude). ARGV: lease deadline ms, max count, queue, notify channel, then
-- pairs (id, task value).
-- `enqueue` without a wake-up then `dispatch`, in one script (worker/handover.py: the caller has a
-- worker with credit for max count). Returns what dispatch returns. When the queue is not paused
-- and has no ready task, the new tasks would be the first to leave it: the first max count are
-- leased at once, without passing through the ready set; the rest wait there, announced.
-- The deadline comes as the caller wrote it (a string: no number to format for ZADD).
local deadline, max = ARGV[1], tonumber(ARGV[2])
local queue, channel = ARGV[3], ARGV[4]
local stopped = redis.call('EXISTS', paused) == 1
local direct = not stopped and redis.call('ZCARD', ready) == 0
local out, waiting = {}, 0
for i = 5, #ARGV, 2 do
  local id, value = ARGV[i], ARGV[i + 1]
  if redis.call('HSETNX', task, id, value) == 1 then
    local ok, err
    if direct and #out < max * 4 then
      ok, err = pcall(lease, id, value, deadline, out)
    else
      ok, err = pcall(ready_last, id, value)
      waiting = waiting + 1
    end
    placed(ok, err, id)
  end
end
if direct then
  if waiting > 0 then redis.call('PUBLISH', channel, queue) end
  return out
end
if stopped then return {} end
local ids = redis.call('ZRANGE', ready, 0, max - 1)
for _, id in ipairs(ids) do
  local value = redis.call('HGET', task, id)
  if value then lease(id, value, deadline, out) end
end
if #ids > 0 then redis.call('ZREM', ready, unpack(ids)) end
if redis.call('ZCARD', ready) > 0 then redis.call('PUBLISH', channel, queue) end
return out

--! extend
-- KEYS: the queue's (prelude). ARGV: new deadline ms, then pairs (id, token).
-- Extends current leases; returns {the ids whose token is stale, then pairs (id, grace seconds) of
-- the current ones a Cancel was asked for (revoke): their worker may have missed the signal}.
local deadline = ARGV[1]
local stale, asked = {}, {}
local cancels = redis.call('EXISTS', cancel) == 1
each_held(2, 2, function(id)
  redis.call('ZADD', leases, 'XX', deadline, id)
  local grace = cancels and redis.call('HGET', cancel, id)
  if grace then
    asked[#asked + 1] = id
    asked[#asked + 1] = grace
  end
end, function(id) stale[#stale + 1] = id end)
return {stale, asked}

--! complete
-- KEYS: the queue's (prelude), its first six only: ready to cancel, all it touches (store.py).
-- ARGV: pairs (id, token).
-- Ends current leases and forgets their tasks; returns how many ended. (each_held's loop written
-- out: every task ends here, spared the closure a callback costs.)
local n = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', tokens, id) == ARGV[i + 1] then
    end_lease(id)
    redis.call('HDEL', task, id)
    redis.call('HDEL', deliveries, id)
    n = n + 1
  end
end
return n

--! release
-- KEYS: the queue's (prelude). ARGV: queue, notify channel, whether the delivery counts (0: a worker
-- gave the tasks back unstarted; 1: the reaper requeues tasks whose lease expired, `reap`), then
-- pairs (id, token).
-- Puts leased tasks back at the front of their band, but a task a Cancel was asked for (revoke):
-- that one stays held as it is, for its caller to record it cancelled and `complete` it (a caller
-- lost meanwhile leaves the lease to expire, and the reaper finds the Cancel). Returns {how many
-- went back, then the ids kept to be cancelled}.
local queue, channel, counts = ARGV[1], ARGV[2], ARGV[3] == '1'
local out = {0}
local cancels = redis.call('EXISTS', cancel) == 1
each_held(4, 2, function(id)
  if cancels and redis.call('HEXISTS', cancel, id) == 1 then
    out[#out + 1] = id
    return
  end
  local value = redis.call('HGET', task, id)
  if value then
    ready_first(id, value)
    out[1] = out[1] + 1
  end
  end_lease(id)
  if not counts then redis.call('HINCRBY', deliveries, id, -1) end
end)
if out[1] > 0 then redis.call('PUBLISH', channel, queue) end
return out

--! reap
-- KEYS: the queue's (prelude). ARGV: now ms, max deliveries, limit, hold deadline ms.
-- Expired leases. A task delivered max times goes to the dead-letter set, its lease ended. Any other
-- is held by the reaper: a lease of a new token until the hold deadline, while the reaper records
-- that it is queued again; then `release` (keeping the delivery count) puts it at the front of its
-- band. A task a Cancel was asked for (revoke) is held too, whatever its deliveries, for the reaper
-- to record it cancelled and `complete` it. A reaper lost in between leaves the hold to expire, and
-- the task is reaped again. The old token is gone either way: the outcome of a worker that was only
-- late is refused.
-- Returns {n, then n times (id, token, deliveries, task value, 1 when a Cancel was asked else 0),
-- then the dead ids}.
local now, max_deliveries, limit, hold = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
local out, buried = {0}, {}
local cancels = #expired > 0 and redis.call('EXISTS', cancel) == 1
for _, id in ipairs(expired) do
  local value = redis.call('HGET', task, id)
  local delivered = value and tonumber(redis.call('HGET', deliveries, id) or '0')
  local asked = value and cancels and redis.call('HEXISTS', cancel, id) or 0
  if not value then
    end_lease(id)
  elseif delivered >= max_deliveries and asked == 0 then
    redis.call('ZADD', dead, now, id)
    end_lease(id)
    buried[#buried + 1] = id
  else
    local token = redis.call('INCR', fence)
    redis.call('HSET', tokens, id, token)
    redis.call('ZADD', leases, hold, id)
    out[1] = out[1] + 1
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = delivered
    out[#out + 1] = value
    out[#out + 1] = asked
  end
end
for _, id in ipairs(buried) do out[#out + 1] = id end
return out

--! hold
-- KEYS: the queue's (prelude). ARGV: new deadline ms, then pairs (id, token).
-- Extends current leases (an outcome is being recorded) and returns, per pair, the task value, or
-- false when the token is stale.
local deadline = ARGV[1]
local out = {}
each_held(2, 2, function(id)
  redis.call('ZADD', leases, 'XX', deadline, id)
  out[#out + 1] = redis.call('HGET', task, id) or false
end, function() out[#out + 1] = false end)
return out

--! bury
-- KEYS: the queue's (prelude). ARGV: now ms, then pairs (id, token).
-- Ends current leases and moves the tasks to the dead-letter set (their task values stay for a
-- requeue). Returns how many.
local now = ARGV[1]
return each_held(2, 2, function(id)
  redis.call('ZADD', dead, now, id)
  end_lease(id)
  redis.call('HDEL', deliveries, id)
end)

--! revoke
-- KEYS: the queue's (prelude). ARGV: grace seconds, then task ids.
-- Per id: 1 removed from the ready queue (forgotten), 2 leased (running: the Cancel is kept in
-- :cancel until the lease ends, keys.py) or its next attempt parked in :retrying (the Cancel is
-- kept in :cancel, and `retried` names it once the scheduler holds that attempt), 3 neither.
local grace = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', ready, id) == 1 then
    redis.call('HDEL', task, id)
    redis.call('HDEL', deliveries, id)
    out[#out + 1] = 1
  elseif redis.call('HEXISTS', tokens, id) == 1 or redis.call('HEXISTS', retrying, id) == 1 then
    redis.call('HSET', cancel, id, grace)
    out[#out + 1] = 2
  else
    out[#out + 1] = 3
  end
end
return out

--! requeue_dead
-- KEYS: the queue's (prelude). ARGV: queue, notify channel, then pairs (id, task value of the new
-- first attempt). Dead tasks go back to the end of their band with a fresh delivery count.
-- Returns how many.
local queue, channel = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV, 2 do
  local id, value = ARGV[i], ARGV[i + 1]
  if redis.call('ZREM', dead, id) == 1 then
    redis.call('HSET', task, id, value)
    redis.call('HDEL', deliveries, id)
    ready_last(id, value)
    n = n + 1
  end
end
if n > 0 then redis.call('PUBLISH', channel, queue) end
return n

--! retire
-- KEYS: the queue's (prelude). ARGV: now ms, then triples (id, token, serialized Task of the next
-- attempt). Ends current leases and keeps the next attempt in :retrying until the scheduler holds
-- it. A task a Cancel was asked for while it ran (:cancel) takes no next attempt: its lease stays
-- as it is, for the caller to record it cancelled and `complete` it (a caller lost in between: the
-- lease expires, and `reap` finds the Cancel). Returns {the ids retired, the ids kept to cancel}.
local now = ARGV[1]
local out, kept = {}, {}
local cancels = redis.call('EXISTS', cancel) == 1
each_held(2, 3, function(id, i)
  if cancels and redis.call('HEXISTS', cancel, id) == 1 then
    kept[#kept + 1] = id
    return
  end
  redis.call('HSET', retrying, id, ARGV[i + 2])
  redis.call('ZADD', retry_at, now, id)
  end_lease(id)
  redis.call('HDEL', task, id)
  redis.call('HDEL', deliveries, id)
  out[#out + 1] = id
end)
return {out, kept}

--! retried
-- KEYS: the queue's (prelude). ARGV: ids of tasks whose next attempts the scheduler holds now.
-- Forgets them in :retrying; returns those a Cancel was asked for while they were parked there
-- (revoke): the caller asks the scheduler to cancel them, then forgets their Cancel (store.py).
local asked = {}
local cancels = redis.call('EXISTS', cancel) == 1
for _, id in ipairs(ARGV) do
  redis.call('HDEL', retrying, id)
  redis.call('ZREM', retry_at, id)
  if cancels and redis.call('HEXISTS', cancel, id) == 1 then asked[#asked + 1] = id end
end
return asked

-- Housekeeping (housekeeping.py): bounds on what a queue keeps.

--! trim_dead
-- KEYS: the queue's (prelude). ARGV: time before which dead tasks are forgotten (ms), how many dead
-- tasks are kept at most, how many are forgotten per call at most. The oldest go first; their task
-- values and delivery counts go with them. Returns how many were forgotten.
local before, keep, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function forget(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', dead, id)
    redis.call('HDEL', task, id)
    redis.call('HDEL', deliveries, id)
  end
  return #ids
end
local n = forget(redis.call('ZRANGEBYSCORE', dead, '-inf', '(' .. before, 'LIMIT', 0, limit))
local extra = math.min(redis.call('ZCARD', dead) - keep, limit - n)
if extra > 0 then n = n + forget(redis.call('ZRANGE', dead, 0, extra - 1)) end
return n

--! forget_idle
-- KEYS: the queue's (prelude). ARGV: none. A queue that holds nothing (no ready, leased, dead,
-- retrying or stored task) and is not paused: its leftover bookkeeping (tokens, deliveries, retry
-- times) is deleted and 1 is returned; else 0. The fence counter stays, so a lease token is never
-- given out twice in a queue.
if redis.call('ZCARD', ready) + redis.call('HLEN', task) + redis.call('ZCARD', leases)
    + redis.call('ZCARD', dead) + redis.call('EXISTS', paused) + redis.call('HLEN', retrying) > 0 then
  return 0
end
redis.call('DEL', tokens, deliveries, cancel, retry_at)
return 1
