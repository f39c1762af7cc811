-- Transitions of the worker registry. Every script takes the KEYS of keys.queue_keys(q):
--   KEYS[1] ready  KEYS[2] task  KEYS[3] leases  KEYS[4] tokens  KEYS[5] deliveries
--   KEYS[6] fence  KEYS[7] dead  KEYS[8] paused  KEYS[9] retrying  KEYS[10] retry_at
-- Each section below, from "--! name" to the next, is loaded as one script.

--! enqueue
-- ARGV: queue, notify channel, then triples (id, band, task bytes). A task already known is skipped.
-- An empty channel publishes nothing: the caller dispatches in the same pipeline (see dispatch).
local added = 0
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HSETNX', KEYS[2], id, string.format('%03d', ARGV[i + 1]) .. ARGV[i + 2]) == 1 then
    local seq = redis.call('INCR', KEYS[6])
    redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 1]) * 1099511627776 + seq, id)
    added = added + 1
  end
end
if added > 0 and ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return added

--! dispatch
-- ARGV: now ms, lease ms, max count[, queue, notify channel]. Leases up to max ready tasks.
-- Returns a flat list: id, token, delivery, task value, ... Nothing while the queue is paused.
-- With a queue and channel, publishes the queue when ready tasks are left (tasks were enqueued just
-- before, in the same pipeline, without a wake-up, to be handed straight to one worker).
if redis.call('EXISTS', KEYS[8]) == 1 then return {} end
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
if #ids == 0 then return {} end
redis.call('ZREM', KEYS[1], unpack(ids))
if ARGV[5] and redis.call('ZCARD', KEYS[1]) > 0 then redis.call('PUBLISH', ARGV[5], ARGV[4]) end
local deadline = tonumber(ARGV[1]) + tonumber(ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[2], id)
  if value then
    local token = redis.call('INCR', KEYS[6])
    redis.call('HSET', KEYS[4], id, token)
    redis.call('ZADD', KEYS[3], deadline, id)
    local d = redis.call('HINCRBY', KEYS[5], id, 1)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = d
    out[#out + 1] = value
  end
end
return out

--! extend
-- ARGV: new deadline ms, then pairs (id, token). Extends current leases; returns ids whose token is stale.
local stale = {}
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[3], 'XX', ARGV[1], ARGV[i])
  else
    stale[#stale + 1] = ARGV[i]
  end
end
return stale

--! complete
-- ARGV: pairs (id, token). Ends current leases and forgets their tasks; returns how many ended.
local n = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    n = n + 1
  end
end
return n

--! release
-- ARGV: queue, notify channel, then pairs (id, token). Puts leased tasks that were not started back
-- at the front of their priority band; the delivery does not count.
local n = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HINCRBY', KEYS[5], id, -1)
    local value = redis.call('HGET', KEYS[2], id)
    if value then
      redis.call('ZADD', KEYS[1], tonumber(string.sub(value, 1, 3)) * 1099511627776, id)
      n = n + 1
    end
  end
end
if n > 0 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return n

--! reap
-- ARGV: queue, notify channel, now ms, max deliveries, limit. Expired leases go back to ready, or to
-- the dead-letter set once delivered max times. Returns {requeued count, dead id, dead id, ...}.
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[5]))
local requeued = 0
local out = {0}
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  local value = redis.call('HGET', KEYS[2], id)
  if value then
    local d = tonumber(redis.call('HGET', KEYS[5], id) or '0')
    if d >= tonumber(ARGV[4]) then
      redis.call('ZADD', KEYS[7], ARGV[3], id)
      out[#out + 1] = id
    else
      redis.call('ZADD', KEYS[1], tonumber(string.sub(value, 1, 3)) * 1099511627776, id)
      requeued = requeued + 1
    end
  end
end
out[1] = requeued
if requeued > 0 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return out

--! hold
-- ARGV: new deadline ms, then pairs (id, token). Extends current leases (an outcome is being
-- recorded) and returns, per pair, the task value, or false when the token is stale.
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[3], 'XX', ARGV[1], id)
    out[#out + 1] = redis.call('HGET', KEYS[2], id) or false
  else
    out[#out + 1] = false
  end
end
return out

--! bury
-- ARGV: now ms, then pairs (id, token). Ends current leases and moves the tasks to the
-- dead-letter set (their task values stay for a requeue). Returns how many.
local n = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('ZADD', KEYS[7], ARGV[1], id)
    n = n + 1
  end
end
return n

--! revoke
-- ARGV: task ids. Per id: 1 removed from the ready queue (forgotten), 2 leased (running),
-- 3 neither.
local out = {}
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    out[#out + 1] = 1
  elseif redis.call('HEXISTS', KEYS[4], id) == 1 then
    out[#out + 1] = 2
  else
    out[#out + 1] = 3
  end
end
return out

--! requeue_dead
-- ARGV: queue, notify channel, then triples (id, band, new task value). Dead tasks go back to the
-- ready queue with a fresh delivery count. Returns how many.
local n = 0
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[7], id) == 1 then
    redis.call('HSET', KEYS[2], id, string.format('%03d', ARGV[i + 1]) .. ARGV[i + 2])
    redis.call('HDEL', KEYS[5], id)
    local seq = redis.call('INCR', KEYS[6])
    redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 1]) * 1099511627776 + seq, id)
    n = n + 1
  end
end
if n > 0 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return n

--! retire
-- ARGV: now ms, then triples (id, token, serialized Task of the next attempt). Ends current leases
-- and keeps the next attempt in :retrying until the scheduler holds it. Returns the ids retired.
local out = {}
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HSET', KEYS[9], id, ARGV[i + 2])
    redis.call('ZADD', KEYS[10], ARGV[1], id)
    out[#out + 1] = id
  end
end
return out

-- Housekeeping (housekeeping.py): bounds on what a queue keeps.

--! trim_dead
-- ARGV: time before which dead tasks are forgotten (ms), how many dead tasks are kept at most,
-- how many are forgotten per call at most. The oldest go first; their task values and delivery
-- counts go with them. Returns how many were forgotten.
local limit = tonumber(ARGV[3])
local function forget(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[7], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
  end
  return #ids
end
local n = forget(redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit))
local extra = math.min(redis.call('ZCARD', KEYS[7]) - tonumber(ARGV[2]), limit - n)
if extra > 0 then n = n + forget(redis.call('ZRANGE', KEYS[7], 0, extra - 1)) end
return n

--! forget_idle
-- No ARGV. A queue that holds nothing (no ready, leased, dead, retrying or stored task) and is not
-- paused: its leftover bookkeeping (tokens, deliveries, retry times) is deleted and 1 is returned;
-- else 0. The fence counter stays, so a lease token is never given out twice in a queue.
if redis.call('ZCARD', KEYS[1]) + redis.call('HLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3])
    + redis.call('ZCARD', KEYS[7]) + redis.call('EXISTS', KEYS[8]) + redis.call('HLEN', KEYS[9]) > 0 then
  return 0
end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[10])
return 1
