"""The Lua that Redis runs for the shared vendor budgets (``adapters.shared_pacing``). Each
decision is one script: Redis runs a script whole, with no other command in between, so
checking a budget and counting a start cannot be split by another worker's. Every script
reads the server's clock (``TIME``), never the caller's, and sets a TTL on what it writes.
Numbers go back as strings: Redis would cut a Lua number to an integer. A time kept in a
key is written to the microsecond (``%.6f``, as ``TIME`` gives it), never with ``tostring``:
Lua prints 14 digits, which for today's epoch seconds is 0.1 ms, so a stamp read back could
be later than the start it marks."""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: starts, paused, workers, last. ARGV: calls, window, member, worker, presence, spacing.
# Returns {granted, wait, workers}: granted "1" when the start is counted (wait "0"), else
# "0" and the seconds to wait, never less than ``MIN_WAIT``. The grant is said outright, never
# read from the wait: a wait is a difference of times near 1.8e9 s, whose rounding can make a
# wait just under nothing, and a request taken as granted that no window counts is a 429.
# ``spacing``: the least time between two starts, so that a full window's worth is spread
# out rather than sent in one burst (``SharedPacer.spacing`` says why); ``last`` keeps the
# newest start, since a start's own stamp moves to its answer (RESTAMP).
ACQUIRE = (
    _NOW
    + """
local MIN_WAIT = 0.001
local function wait(seconds, workers)
  return {'0', tostring(math.max(seconds, MIN_WAIT)), workers}
end
local calls, window, presence = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - presence)
redis.call('PEXPIRE', KEYS[3], math.ceil(presence * 1000))
local workers = redis.call('ZCARD', KEYS[3])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return wait(paused - now, workers) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
local spacing = tonumber(ARGV[6] or '0')
if now - last < spacing then return wait(last + spacing - now, workers) end
if redis.call('ZCARD', KEYS[1]) < calls then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
  redis.call('SET', KEYS[4], string.format('%.6f', now), 'PX', math.ceil(window * 1000) + 1000)
  return {'1', '0', workers}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return wait(tonumber(oldest[2]) + window - now, workers)
"""
)

_HOLD = """
local hold = tonumber(ARGV[1])
if hold > 0 then
  local till = now + hold
  if till > tonumber(redis.call('GET', KEYS[2]) or '0') then
    redis.call('SET', KEYS[2], string.format('%.6f', till), 'PX', math.ceil(hold * 1000) + 1000)
  end
end
"""

# KEYS: starts. ARGV: member. The start is over: it counts from now, when the vendor had
# surely stamped its arrival (``Pacer.answered`` says why). A start already aged out, or
# replaced by a merge, is left alone.
RESTAMP = (
    _NOW
    + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
end
return 1
"""
)

# KEYS: starts, paused. ARGV: seconds. A longer pause already set is kept.
HOLD_OFF = _NOW + _HOLD + "return 1"

# KEYS: starts, paused. ARGV: hold, window, then (age, member) pairs: starts made locally.
MERGE = (
    _NOW
    + _HOLD
    + """
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now - tonumber(ARGV[i]), ARGV[i + 1])
end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000) + 1000) end
return 1
"""
)

# KEYS: figure, in_flight. ARGV: member, stale, poll. Mirrors ``HourlyQuota.wait_needed``.
QUOTA_TAKE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
if remaining then
  local resets_at = tonumber(redis.call('HGET', KEYS[1], 'resets_at'))
  if now >= resets_at and remaining < 1 then
    remaining = 1
    redis.call('HSET', KEYS[1], 'remaining', 1)
  end
  if remaining - redis.call('ZCARD', KEYS[2]) <= 0 then
    return tostring(math.max(resets_at - now, tonumber(ARGV[3])))
  end
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2]) * 1000))
return '0'
"""
)

# KEYS: figure, in_flight. ARGV: member ("" none), remaining ("" none), resets_in, keep.
QUOTA_ANSWER = (
    _NOW
    + """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
if ARGV[2] ~= '' then
  local resets_in = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'remaining', ARGV[2], 'resets_at', tostring(now + resets_in))
  redis.call('PEXPIRE', KEYS[1], math.ceil((resets_in + tonumber(ARGV[4])) * 1000))
end
return 1
"""
)
