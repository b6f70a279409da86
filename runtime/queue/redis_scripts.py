"""The Redis backend's Lua scripts: every queue operation that touches more than one key is one script.

Redis runs a script alone, start to finish, so each operation is atomic
across workers and processes without locks. Keys, all under the prefix
``p`` (passed as ARGV[1]; the scripts build their keys, so a prefix is the
only thing to configure)::

    p:job:<id>          hash: the job (fields below)
    p:ready:<0..3>      zset per priority: runnable or waiting jobs, scored by run_at; the member is
                        <seq><id>, seq a 16-digit hex enqueue counter, so equal run_at ties go by
                        enqueue order (Redis orders equal scores by member)
    p:running           zset: leased job ids by lease_until
    p:dead              zset: <dseq><id> by time of death (dseq breaks ties: latest death last)
    p:done              zset: succeeded job ids by finished_at (what ``sweep`` walks)
    p:dedupe:<key>      string: the id of the job holding the dedupe key
    p:ticks             hash: schedule key -> last tick recorded
    p:seq               counter behind seq and dseq

A job waiting for its run_at stays in its ready set: a claim only takes
members scored <= now, so a delayed job needs no move when it comes due.

Times arrive as the caller's decimal strings and are stored as given: Lua
prints numbers with 14 digits, so a time is never turned into a Lua number
and back (only compared).
"""

from __future__ import annotations

# Shared helpers, prepended to every script (a script cannot call another).
_PRELUDE = """
local p = ARGV[1]
local function jkey(id) return p .. ':job:' .. id end
local function ready(prio) return p .. ':ready:' .. prio end

local function held(k, token)
  local j = redis.call('HMGET', k, 'state', 'token')
  return j[1] == 'running' and j[2] == token
end

local function unlease(k, id)
  redis.call('ZREM', p .. ':running', id)
  redis.call('HDEL', k, 'token', 'lease_until', 'worker')
end

local function requeue(k, id, state, run_at, now)
  local j = redis.call('HMGET', k, 'priority', 'seq')
  redis.call('HSET', k, 'state', state, 'run_at', run_at, 'updated_at', now)
  redis.call('ZADD', ready(j[1]), run_at, j[2] .. id)
end

local function kill(k, id, err, now)
  local dseq = string.format('%016x', redis.call('INCR', p .. ':seq'))
  redis.call('HSET', k, 'state', 'dead', 'error', err, 'finished_at', now,
    'updated_at', now, 'dseq', dseq)
  redis.call('ZADD', p .. ':dead', now, dseq .. id)
end

local function drop(k, id)
  local dedupe = redis.call('HGET', k, 'dedupe_key')
  if dedupe and dedupe ~= '' then
    local dkey = p .. ':dedupe:' .. dedupe
    if redis.call('GET', dkey) == id then redis.call('DEL', dkey) end
  end
  redis.call('DEL', k)
end

-- a[i..i+9]: id type payload priority run_at max_retries dedupe_key owner target traceparent
local function enqueue_one(a, i, now)
  local id, dedupe = a[i], a[i + 6]
  if dedupe ~= '' then
    local dkey = p .. ':dedupe:' .. dedupe
    local holder = redis.call('GET', dkey)
    if holder and redis.call('EXISTS', jkey(holder)) == 1 then return {holder, 0} end
    redis.call('SET', dkey, id)
  end
  local seq = string.format('%016x', redis.call('INCR', p .. ':seq'))
  redis.call('HSET', jkey(id), 'id', id, 'type', a[i + 1], 'payload', a[i + 2],
    'priority', a[i + 3], 'state', 'queued', 'attempts', 0, 'max_retries', a[i + 5],
    'run_at', a[i + 4], 'created_at', now, 'updated_at', now, 'owner', a[i + 7],
    'target', a[i + 8], 'traceparent', a[i + 9], 'dedupe_key', dedupe, 'seq', seq)
  redis.call('ZADD', ready(a[i + 3]), a[i + 4], seq .. id)
  return {id, 1}
end
"""

# ARGV: p now spec... (10 entries each, as enqueue_one reads them) -> {id, created} per spec
ENQUEUE = """
local now, out = ARGV[2], {}
for i = 3, #ARGV, 10 do out[#out + 1] = enqueue_one(ARGV, i, now) end
return out
"""

# ARGV: p key tick now spec -> {id, created}, or nil when the tick is not newer than the last one
TICK = """
local ticks, key, tick = p .. ':ticks', ARGV[2], ARGV[3]
local last = redis.call('HGET', ticks, key)
if last and tonumber(tick) <= tonumber(last) then return false end
redis.call('HSET', ticks, key, tick)
if not last then return false end
return enqueue_one(ARGV, 5, ARGV[4])
"""

# ARGV: p now lease_until limit fair(0|1) reap_limit worker token... -> one HGETALL reply per leased job
CLAIM = """
local now, lease_until, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local fair, reap_limit, worker = ARGV[5] == '1', tonumber(ARGV[6]), ARGV[7]
local running = p .. ':running'

-- Reap: leases that ran out go back (the attempt stays counted; run_at kept, so first in line) or die.
local expired = redis.call('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, reap_limit)
for _, id in ipairs(expired) do
  local k = jkey(id)
  local j = redis.call('HMGET', k, 'attempts', 'max_retries')
  unlease(k, id)
  if j[1] then
    redis.call('HSET', k, 'error', 'lease expired')
    if tonumber(j[1]) <= tonumber(j[2]) then
      requeue(k, id, 'failed', redis.call('HGET', k, 'run_at'), now)
    else
      kill(k, id, 'lease expired', now)
    end
  end
end

-- Pick: strict priority order, or (fair) the longest-waiting across the priorities.
local picked = {}
if fair then
  local cands = {}
  for prio = 0, 3 do
    local r = redis.call('ZRANGEBYSCORE', ready(prio), '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
    for i = 1, #r, 2 do cands[#cands + 1] = {tonumber(r[i + 1]), r[i], prio} end
  end
  table.sort(cands, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  for i = 1, math.min(limit, #cands) do picked[i] = {cands[i][3], cands[i][2]} end
else
  for prio = 0, 3 do
    if #picked >= limit then break end
    local r = redis.call('ZRANGEBYSCORE', ready(prio), '-inf', now, 'LIMIT', 0, limit - #picked)
    for _, m in ipairs(r) do picked[#picked + 1] = {prio, m} end
  end
end

local out = {}
for i, pick in ipairs(picked) do
  redis.call('ZREM', ready(pick[1]), pick[2])
  local id = string.sub(pick[2], 17)
  local k = jkey(id)
  if redis.call('EXISTS', k) == 1 then
    redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('HSET', k, 'state', 'running', 'token', ARGV[7 + i],
      'lease_until', lease_until, 'updated_at', now, 'worker', worker)
    redis.call('ZADD', running, lease_until, id)
    out[#out + 1] = redis.call('HGETALL', k)
  end
end
return out
"""

# ARGV: p now lease_until (id token)... -> 1 or 0 per lease
EXTEND = """
local now, lease_until, out = ARGV[2], ARGV[3], {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local k = jkey(id)
  if held(k, ARGV[i + 1]) then
    redis.call('HSET', k, 'lease_until', lease_until, 'updated_at', now)
    redis.call('ZADD', p .. ':running', lease_until, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""

# ARGV: p id token now result_json -> 1 or 0
COMPLETE = """
local id, now = ARGV[2], ARGV[4]
local k = jkey(id)
if not held(k, ARGV[3]) then return 0 end
unlease(k, id)
redis.call('HDEL', k, 'error')
redis.call('HSET', k, 'state', 'succeeded', 'result', ARGV[5], 'finished_at', now, 'updated_at', now)
redis.call('ZADD', p .. ':done', now, id)
return 1
"""

# ARGV: p id token now error retry_at('' = dead) -> 1 or 0
FAIL = """
local id, now, retry_at = ARGV[2], ARGV[4], ARGV[6]
local k = jkey(id)
if not held(k, ARGV[3]) then return 0 end
unlease(k, id)
if retry_at == '' then
  kill(k, id, ARGV[5], now)
else
  redis.call('HSET', k, 'error', ARGV[5])
  requeue(k, id, 'failed', retry_at, now)
end
return 1
"""

# ARGV: p id token now run_at error('' = none) -> 1 or 0
RELEASE = """
local id, now = ARGV[2], ARGV[4]
local k = jkey(id)
if not held(k, ARGV[3]) then return 0 end
unlease(k, id)
redis.call('HINCRBY', k, 'attempts', -1)
if ARGV[6] == '' then redis.call('HDEL', k, 'error') else redis.call('HSET', k, 'error', ARGV[6]) end
requeue(k, id, 'queued', ARGV[5], now)
return 1
"""

# dead_ids(limit, first): ARGV[first..] that are dead jobs, or (none given) up to limit of any dead jobs
_DEAD_IDS = """
local function dead_ids(limit, first)
  if #ARGV < first then
    local ids = {}
    for _, m in ipairs(redis.call('ZRANGE', p .. ':dead', 0, limit - 1)) do ids[#ids + 1] = string.sub(m, 17) end
    return ids
  end
  local ids = {}
  for i = first, #ARGV do
    if redis.call('HGET', jkey(ARGV[i]), 'state') == 'dead' then ids[#ids + 1] = ARGV[i] end
  end
  return ids
end
"""

# ARGV: p now limit id... -> how many dead jobs were queued again
REPLAY = (
    _DEAD_IDS
    + """
local now, n = ARGV[2], 0
for _, id in ipairs(dead_ids(tonumber(ARGV[3]), 4)) do
  local k = jkey(id)
  redis.call('ZREM', p .. ':dead', redis.call('HGET', k, 'dseq') .. id)
  redis.call('HDEL', k, 'dseq', 'finished_at')
  redis.call('HSET', k, 'attempts', 0)
  requeue(k, id, 'queued', now, now)
  n = n + 1
end
return n
"""
)

# ARGV: p limit id... -> how many dead jobs were deleted
PURGE = (
    _DEAD_IDS
    + """
local n = 0
for _, id in ipairs(dead_ids(tonumber(ARGV[2]), 3)) do
  local k = jkey(id)
  redis.call('ZREM', p .. ':dead', redis.call('HGET', k, 'dseq') .. id)
  drop(k, id)
  n = n + 1
end
return n
"""
)

# ARGV: p cutoff limit -> how many succeeded jobs that finished before cutoff were deleted
SWEEP = """
local ids = redis.call('ZRANGEBYSCORE', p .. ':done', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZREM', p .. ':done', id)
  drop(jkey(id), id)
end
return #ids
"""

# ARGV: p offset limit -> HGETALL replies of dead jobs, most recently dead first
DEAD = """
local out = {}
local members = redis.call('ZREVRANGE', p .. ':dead', ARGV[2], ARGV[2] + ARGV[3] - 1)
for _, m in ipairs(members) do
  local h = redis.call('HGETALL', jkey(string.sub(m, 17)))
  if #h > 0 then out[#out + 1] = h end
end
return out
"""

# ARGV: p now -> ready count per priority (4), delayed, running, dead, succeeded
STATS = """
local now, out, delayed = ARGV[2], {}, 0
for prio = 0, 3 do
  out[#out + 1] = redis.call('ZCOUNT', ready(prio), '-inf', now)
  delayed = delayed + redis.call('ZCOUNT', ready(prio), '(' .. now, '+inf')
end
out[5] = delayed
out[6] = redis.call('ZCARD', p .. ':running')
out[7] = redis.call('ZCARD', p .. ':dead')
out[8] = redis.call('ZCARD', p .. ':done')
return out
"""


def script(body: str) -> str:
    """A script's full text: the shared helpers, then its body."""
    return _PRELUDE + body
