-- Transitions of the results service. Each section from "--! name" is loaded as one script.

--! record
-- KEYS[1] state hash, KEYS[2] event stream.
-- ARGV: state, progress_only (0/1), expire ms, event bytes, name, queue, attempt, worker, at ms,
--       result bytes, error bytes, reopen (0/1).
-- Nothing is written once the task is final (states 5..9): one result per task, whoever is late.
-- Only a reopen event (a dead task requeued) passes a final state; it clears the old outcome.
local cur = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
if cur >= 5 and cur <= 9 then
  if ARGV[12] ~= '1' then return 0 end
  redis.call('HDEL', KEYS[1], 'res', 'err')
end
if ARGV[2] == '0' then
  redis.call('HSET', KEYS[1], 's', ARGV[1], 'a', ARGV[7], 'u', ARGV[9])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'n', ARGV[5]) end
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'q', ARGV[6]) end
  if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'w', ARGV[8]) end
  if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'res', ARGV[10]) end
  if ARGV[11] ~= '' then
    redis.call('HSET', KEYS[1], 'err', ARGV[11])
  elseif ARGV[1] == '5' then
    redis.call('HDEL', KEYS[1], 'err')
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'e', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
