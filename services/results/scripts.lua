-- Transitions of the results service. Each section from "--! name" is loaded as one script, with
-- the prelude before it and, above that, FIRST_FINAL_STATE, LAST_FINAL_STATE, QUEUED, EVENTS_KEPT
-- and INDEX_WIDE_BYTES (keys.LUA_CONSTANTS) as locals (see common/lua.py). record and events_after
-- take the KEYS of one task, keys.task_keys(id); the index_* scripts those of an index bucket.

--! prelude
-- The result of a task is one STRING (keys.py): "state,count,submitted,spec length:" then the
-- serialized spec, then the latest event that set the state; a folded timeline (folded.py) adds
-- ",started" to the header: when the task started running, in ms after submitted. read() gives
-- its parts (a task not recorded yet: state 0, count 0, no spec, no event, not folded: ''); value()
-- puts them together.
local function read(key)
  local v = redis.call('GET', key)
  if not v then return 0, 0, '', '', false, '' end
  local s, c, t0, n, started, at = string.match(v, '^(%d+),(%d+),(%d*),(%d+),?(-?%d*):()')
  n = tonumber(n)
  local e = string.sub(v, at + n)
  return tonumber(s), tonumber(c), t0, string.sub(v, at, at + n - 1), e ~= '' and e, started
end

local function value(s, c, t0, spec, e, started)
  -- %d formats the three numbers as integers; concatenating a Lua number formats it as a double.
  local head = string.format('%d,%d,%s,%d', s, c, t0, #spec)
  if started then head = head .. ',' .. started end
  return head .. ':' .. spec .. (e or '')
end

local function final(s) return s >= FIRST_FINAL_STATE and s <= LAST_FINAL_STATE end

-- The index entries of one bucket (keys.index_keys: order ZSET, entries HASH, counts HASH) from
-- args[first] on: the oldest time kept (Unix ms: now - retention; 0 when the bucket is younger, so
-- that no entry can be older), most entries kept, expiry time of the bucket (Unix ms), then per
-- task: id, time of the change, entry (state, name, queue, worker, error type joined by chr(31)),
-- how (0: a change, 1: a reopen, 2: a change from a batch that holds the task's submission, so
-- that the task has most likely no entry in the bucket yet), ready time and start time of its
-- latest attempt (ms from the bucket's start; '' = keep the bucket's entry's, 'n' = none).
-- Mirrors `record`: an entry whose state is final is not replaced, but by a reopen. The entry
-- stored is the entry, then the ready and start times ('' when none), joined by chr(31). The
-- counts follow the entries (one per entry's state, one per entry's name; a field an entry keeps
-- when replaced is left alone). Then drops the entries older than the retention (a few per call)
-- and the oldest beyond the cap. Returns how many were dropped.
local function put_index(order, entries, counts, args, first)
  local oldest, most, expire_at = args[first], tonumber(args[first + 1]), args[first + 2]
  local TIMES = '^[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*)\31([^\31]*)$'
  -- The count fields of an entry: 's' .. state, 'n' .. name.
  local function fields(entry)
    local state, name = string.match(entry, '^([^\31]*)\31([^\31]*)')
    return {'s' .. state, 'n' .. name}
  end
  -- Adds `by` ('1' or '-1': a string, which redis.call passes as is, where a Lua number would be
  -- formatted first) to the counts of an entry's fields, but those of `except` (fields of another
  -- entry that would take the same back).
  local function count(entry, by, except)
    for i, field in ipairs(fields(entry)) do
      if not except or except[i] ~= field then
        if redis.call('HINCRBY', counts, field, by) <= 0 then redis.call('HDEL', counts, field) end
      end
    end
  end
  local added = 0  -- members new to the order set
  for i = first + 3, #args, 6 do
    local id, at, entry, how = args[i], args[i + 1], args[i + 2], args[i + 3]
    local ready, start = args[i + 4], args[i + 5]
    -- A task's first entry in the bucket (how 2, the usual case) is written without reading the
    -- entry first: HSETNX writes it if absent (times to carry are then none); only when an entry
    -- is there after all does the task take the path of a change, which reads it.
    local written = false
    if how == '2' then
      local r, s = ready == 'n' and '' or ready, start == 'n' and '' or start
      written = redis.call('HSETNX', entries, id, entry .. '\31' .. r .. '\31' .. s) == 1
      if written then count(entry, '1') end
    end
    if not written then
      local old = redis.call('HGET', entries, id)
      local old_state = old and tonumber(string.match(old, '^(%d+)')) or 0
      if how == '1' or not final(old_state) then
        if ready == '' or start == '' then
          local old_ready, old_start = '', ''
          if old then old_ready, old_start = string.match(old, TIMES) end
          if ready == '' then ready = old_ready or '' end
          if start == '' then start = old_start or '' end
        end
        if ready == 'n' then ready = '' end
        if start == 'n' then start = '' end
        local same = old and fields(old)
        if old then count(old, '-1', fields(entry)) end
        count(entry, '1', same)
        redis.call('HSET', entries, id, entry .. '\31' .. ready .. '\31' .. start)
        written = true
      end
    end
    if written then added = added + redis.call('ZADD', order, at, id) end
  end
  local stale = {}
  if oldest ~= '0' then stale = redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. oldest, 'LIMIT', 0, 100) end
  local size = redis.call('ZCARD', order)
  if size - #stale > most then
    stale = redis.call('ZRANGE', order, 0, size - most - 1)
  end
  if #stale > 0 then
    for _, entry in ipairs(redis.call('HMGET', entries, unpack(stale))) do
      if entry then count(entry, '-1') end
    end
    redis.call('HDEL', entries, unpack(stale))
    redis.call('ZREM', order, unpack(stale))
  end
  -- The bucket's expiry (it depends on the bucket only) is set once, by the call that created its
  -- order set: the one whose new members are all its members (no PTTL read per call). The same
  -- call makes the entries a hash table (keys.py: the field '', longer than Redis keeps in a
  -- compact hash): a compact hash is scanned on each write, O(entries) per task up to 512.
  if size > 0 and added == size then
    redis.call('HSET', entries, '', string.rep('.', INDEX_WIDE_BYTES))
    for _, key in ipairs({order, entries, counts}) do redis.call('PEXPIREAT', key, expire_at) end
  end
  return #stale
end

--! record
-- KEYS: result, event log (a LIST of serialized TaskEvents, oldest first), the state hash a
-- previous version kept (read once, when the task has no result yet, so that a task in flight
-- across an upgrade keeps its history; keys.py).
-- ARGV: result expiry ms, timeline expiry ms (both from the task's final event on), whether a
-- state hash of the previous layout may exist (0|1: store.py; 0 spares reading it), or 'f' and the
-- ms after its submission when the task started: the events are a plain timeline (folded.py; no
-- state hash of the previous layout can exist), kept in the result instead of the log when they
-- are the task's first and all three are taken; the number of events N, then per event of this
-- task, in order: its kind, the serialized TaskEvent (without its task id and spec), then, by its
-- kind, the serialized TaskSpec and the submission time ms, then the same event without its name
-- and queue and the start of a serialized spec with that name and queue: the slim event is kept when the task's spec starts so (readers take the name and
-- queue back from the spec). The kind is state * 16 + 8 (progress only) + 4 (reopen) + 2 (with
-- the spec) + 1 (with a slim form): one argument, not five, of which most would be empty (each
-- argument costs Redis an allocation and a Lua string; a one-by-one task's three events take 8
-- arguments, not 24).
-- Optionally, on a single Redis (not a cluster: the keys are in other slots), KEYS 4-6 are an index
-- bucket's and the ARGV after the events are put_index's for the task (prelude): the task's entry is
-- written in the same call, which spares a script call per task (store.py).
-- Returns 1 or 0 per event (0: refused), then, when the task is final after what it wrote, the
-- result as written (the recording process hands it to its followers without reading it back:
-- store.py).
-- Nothing is written once the task is final: one result per task, whoever is late. Only a reopen
-- event (a dead task requeued) passes a final state.
-- The result keeps the state and the latest event that changed it, which carries the name,
-- attempt, worker, time, result and error; the spec submitted and when (the only copy of the
-- spec: events_after gives it back with the first event); the count of events ever appended: an
-- event's cursor is its number, which stays valid when the log is trimmed to its last EVENTS_KEPT
-- events (once it is 100 over, so the trim is rare) or has expired.
-- The events of one call are written together: one SET, one RPUSH, whatever their number.
-- (A LIST, not a STREAM: a Redis 6.2 stream allocates a 4 KB node for its first entry.)
local result, log, legacy = KEYS[1], KEYS[2], KEYS[3]
local expire_ms, timeline_ms, legacy_possible = ARGV[1], ARGV[2], ARGV[3]
local fold = string.match(legacy_possible, '^f(-?%d+)$')
local current, count, t0, spec, latest = read(result)
if count == 0 and legacy_possible == '1' then
  local old = redis.call('HMGET', legacy, 's', 'c', 't0', 'p', 'e')
  if old[1] then
    current, count, t0, spec, latest = tonumber(old[1]), tonumber(old[2] or '0'), old[3] or '', old[4] or '', old[5]
  end
end
local was_final = final(current)
local out, pushed = {}, {}
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local kind, e = tonumber(ARGV[i]), ARGV[i + 1]
  local flags = kind % 16
  local with_spec, with_slim = flags % 4 >= 2, flags % 2 == 1
  local new_spec, submitted, slim, named
  i = i + 2
  if with_spec then new_spec, submitted, i = ARGV[i], ARGV[i + 1], i + 2 end
  if with_slim then slim, named, i = ARGV[i], ARGV[i + 1], i + 2 end
  if final(current) and flags % 8 < 4 then  -- not a reopen
    out[#out + 1] = 0
  elseif with_spec and spec ~= '' and kind - flags == QUEUED * 16 and flags % 8 < 4 then
    -- The QUEUED event that comes with the spec is a task's first: once the spec is stored, it is
    -- the same event again (a task delivered again after its lease expired or its worker gave it
    -- back, a submission sent twice), already in the log. Acknowledged, not appended.
    out[#out + 1] = 1
  else
    if with_spec and spec == '' then spec, t0 = new_spec, submitted end
    if with_slim and spec ~= '' and string.sub(spec, 1, #named) == named then e = slim end
    if flags < 8 then  -- not progress only
      current, latest = (kind - flags) / 16, e
    end
    pushed[#pushed + 1] = e
    out[#out + 1] = 1
  end
end
if #KEYS > 3 then put_index(KEYS[4], KEYS[5], KEYS[6], ARGV, i) end
if #pushed == 0 then return out end
if fold and count == 0 and #pushed == 3 and final(current) then  -- a plain timeline, folded
  local v = value(current, 3, t0, spec, latest, fold)
  redis.call('SET', result, v, 'PX', expire_ms)
  out[#out + 1] = v
  return out
end
local v = value(current, count + #pushed, t0, spec, latest)
if redis.call('RPUSH', log, unpack(pushed)) > EVENTS_KEPT + 100 then redis.call('LTRIM', log, -EVENTS_KEPT, -1) end
-- Expiry applies to finished tasks only: a task waiting or running keeps its history (a SET
-- without PX keeps no expiry). The timeline (the log) has its own, shorter retention.
if final(current) then
  redis.call('SET', result, v, 'PX', expire_ms)
  redis.call('PEXPIRE', log, timeline_ms)
  out[#out + 1] = v
else
  redis.call('SET', result, v)
  if was_final then redis.call('PERSIST', log) end
end
return out

--! events_after
-- KEYS: result, event log. ARGV: number of events already seen, max count.
-- Returns the number of the event before the first one returned, the spec submitted (events
-- kept without their name and queue take them from it; '' when not known), what is gone (0: nothing, 1: events after the number seen
-- were trimmed, 2: the log expired: the latest event that set the state stands for the events
-- after the number seen, as the last of them), then up to max count events. A folded timeline
-- (folded.py) is returned as the number seen, the spec, 3, the submission time, the start time
-- (ms after it) and the final event: the reader rebuilds the rest.
local result, log = KEYS[1], KEYS[2]
local seen, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local _, total, t0, spec, latest, started = read(result)
local kept = redis.call('LLEN', log)
local first = total - kept
if kept == 0 and total > seen and latest then
  if started ~= '' then return {seen, spec, 3, t0, started, latest} end
  return {total - 1, spec, 2, latest}
end
local from = math.max(seen, first)
local out = redis.call('LRANGE', log, from - first, from - first + max - 1)
table.insert(out, 1, from > seen and 1 or 0)
table.insert(out, 1, #out > 1 and spec or '')
table.insert(out, 1, from)
return out

--! index_put
-- KEYS: index bucket order ZSET, entries HASH, counts HASH (keys.index_keys).
-- ARGV: as put_index (prelude) reads them from its first. Returns how many entries were dropped.
return put_index(KEYS[1], KEYS[2], KEYS[3], ARGV, 1)

--! index_page
-- KEYS: index bucket order ZSET, entries HASH (keys.index_keys; its counts are not read).
-- ARGV: newest time (Unix ms, inclusive), the id seen last at that time ('' = none seen), oldest
-- time (inclusive), most matches, most entries to look at, then the filters: states (',5,6,' or
-- ''), name, queue, worker, error type ('' = any).
-- Returns: 1 when the bucket was read to its end (else 0), the time and id of the last entry
-- looked at, then per match, newest first: id, time, its ready and start times (as index_put
-- stored them, joined by chr(31); '' for an entry without them).
-- Entries of equal time come in descending id order, so the pair (time, id) resumes a page.
local order, entries = KEYS[1], KEYS[2]
local newest, after, oldest = ARGV[1], ARGV[2], ARGV[3]
local most, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local states, want = ARGV[6], {ARGV[7], ARGV[8], ARGV[9], ARGV[10]}
local newest_n = tonumber(newest)
local out, seen, offset, ended = {}, 0, 0, 0
local TIMES = '^[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*\31[^\31]*)$'
local last_at, last_id = newest, after
local function matches(entry)
  local f = {}
  for v in string.gmatch(entry .. '\31', '([^\31]*)\31') do f[#f + 1] = v end
  if states ~= '' and not string.find(states, ',' .. f[1] .. ',', 1, true) then return false end
  for k = 1, 4 do
    if want[k] ~= '' and want[k] ~= f[k + 1] then return false end
  end
  return true
end
while true do
  local rows = redis.call('ZREVRANGEBYSCORE', order, newest, oldest, 'WITHSCORES', 'LIMIT', offset, 200)
  if #rows == 0 then ended = 1 break end
  offset = offset + #rows / 2
  local stop = false
  for i = 1, #rows, 2 do
    local id, at = rows[i], rows[i + 1]
    if not (after ~= '' and tonumber(at) == newest_n and id >= after) then
      seen = seen + 1
      last_at, last_id = at, id
      local entry = redis.call('HGET', entries, id)
      if entry and matches(entry) then
        out[#out + 1] = id
        out[#out + 1] = at
        out[#out + 1] = string.match(entry, TIMES) or ''
      end
      if #out / 3 >= most or seen >= budget then stop = true break end
    end
  end
  if stop then break end
end
table.insert(out, 1, last_id)
table.insert(out, 1, last_at)
table.insert(out, 1, ended)
return out

--! index_counts
-- KEYS: index bucket counts HASH (keys.index_keys(...).counts). ARGV: none.
-- Returns the bucket's counts: pairs of 's' .. state or 'n' .. name, then the number of entries.
local counts = KEYS[1]
return redis.call('HGETALL', counts)
