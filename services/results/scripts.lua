-- Transitions of the results service. Each section from "--! name" is loaded as one script.

--! record
-- KEYS[1] state hash, KEYS[2] event log (a LIST of serialized TaskEvents, oldest first).
-- ARGV: state, progress_only (0/1), expire ms, event bytes, name, queue, attempt, worker, at ms,
--       result bytes, error bytes, reopen (0/1).
-- Nothing is written once the task is final (states 5..9): one result per task, whoever is late.
-- Only a reopen event (a dead task requeued) passes a final state; it clears the old outcome.
-- Field c of the state hash counts every event appended: an event's cursor is its number, which
-- stays valid when the log is trimmed to its last 1000 events. (A LIST, not a STREAM: a Redis 6.2
-- stream allocates a 4 KB node for its first entry.)
local cur = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
if cur >= 5 and cur <= 9 then
  if ARGV[12] ~= '1' then return 0 end
  redis.call('HDEL', KEYS[1], 'res', 'err')
end
if ARGV[2] == '0' then
  local f = {'s', ARGV[1], 'a', ARGV[7], 'u', ARGV[9]}
  local optional = {{'n', 5}, {'q', 6}, {'w', 8}, {'res', 10}, {'err', 11}}
  for _, o in ipairs(optional) do
    if ARGV[o[2]] ~= '' then
      f[#f + 1] = o[1]
      f[#f + 1] = ARGV[o[2]]
    end
  end
  redis.call('HSET', KEYS[1], unpack(f))
  if ARGV[11] == '' and ARGV[1] == '5' then redis.call('HDEL', KEYS[1], 'err') end
end
redis.call('HINCRBY', KEYS[1], 'c', 1)
if redis.call('RPUSH', KEYS[2], ARGV[4]) > 1100 then redis.call('LTRIM', KEYS[2], -1000, -1) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1

--! events_after
-- KEYS[1] state hash, KEYS[2] event log. ARGV: number of events already seen, max count.
-- Returns the number of the event before the first one returned, then up to max count events.
local total = tonumber(redis.call('HGET', KEYS[1], 'c') or '0')
local first = total - redis.call('LLEN', KEYS[2])
local from = math.max(tonumber(ARGV[1]), first)
local out = redis.call('LRANGE', KEYS[2], from - first, from - first + tonumber(ARGV[2]) - 1)
table.insert(out, 1, from)
return out
