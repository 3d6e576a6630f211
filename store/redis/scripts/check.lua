-- check.lua: one atomic check of a key against one or more limits.
--
-- KEYS[1]    state: hash of every limit's scalar state. Fields are named
--            "<a><window µs>:<f>", a = l (sliding log), w (sliding window)
--            or g (GCRA):
--              l: t = total of the log's costs, s = last seq, n = newest
--                 entry's time
--              w: s = current bucket's start, c = its units, p = the
--                 previous bucket's
--              g: l = level (%.17g, so it round-trips), t = when computed
-- KEYS[2]    ids: sorted set of recent consumes' request ids; member
--            "<cost>:<id>", score = when allowed (Unix µs)
-- KEYS[2+i]  log of limit i: sorted set, score = when allowed, member
--            "<cost>:<seq>" (seq keeps members unique). Named for every
--            limit; used by sliding logs only.
-- ARGV[1]    op: "0" consume, "1" peek, "2" refund
-- ARGV[2]    cost, 1 to 10^15
-- ARGV[3]    now, Unix µs; "" reads the server's TIME
-- ARGV[4]    request id of a consume, or ""
-- ARGV[5]    dedupe window, µs: a consume whose "<cost>:<id>" was allowed
--            less than this ago is a repeat, answered as allowed with the
--            figures of a peek
-- ARGV[6]    most entries of a sliding log (at least 2)
-- ARGV[7]    most ids kept
-- ARGV[8..]  per limit, three values: algorithm (0 log, 1 window, 2 GCRA),
--            units, window µs
-- Reply:     {allowed 0|1, then per limit: allowed 0|1, used, retry_after
--            µs, reset_after µs}
--
-- Only an allowed consume and a refund write; a peek and a denied consume
-- read. Every write sets the TTLs of what it wrote in this script, after
-- writing: a log lives until its newest entry leaves the window, the hash
-- as long as its longest-lived limit (its TTL only grows), the ids for the
-- dedupe window. Each limit's state is also judged by time alone, so a
-- field that outlives its TTL-less key never counts. Mirrors store/memory
-- step for step, floats in the same order, so both stores agree to the
-- bit; numbers are formatted with %d since Lua's default keeps 14 digits.

local op, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local id, dedupe, bound, maxids = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n = (#ARGV - 7) / 3

local function d(x) return string.format('%d', x) end
local function cost_of(m) return tonumber(string.match(m, '^(%d+):')) end

local repeated, member = false, nil
if op == 0 and id ~= '' then
  member = d(cost) .. ':' .. id
  local at = redis.call('ZSCORE', KEYS[2], member)
  if at and tonumber(at) > now - dedupe then repeated, op = true, 1 end
end
local check = cost
if op ~= 0 then check = 1 end

-- Load every limit's fields with one HMGET.
local fields = {l = {'t', 's', 'n'}, w = {'s', 'c', 'p'}, g = {'l', 't'}}
local lims, names = {}, {}
for i = 1, n do
  local a = tonumber(ARGV[5 + 3 * i])
  local L = {a = ({'l', 'w', 'g'})[a + 1], units = tonumber(ARGV[6 + 3 * i]), window = tonumber(ARGV[7 + 3 * i]), log = KEYS[2 + i]}
  L.p = L.a .. d(L.window) .. ':'
  L.first = #names + 1
  for _, f in ipairs(fields[L.a]) do names[#names + 1] = L.p .. f end
  lims[i] = L
end
local vals = redis.call('HMGET', KEYS[1], unpack(names))
for _, L in ipairs(lims) do
  L.v = {}
  for j, f in ipairs(fields[L.a]) do L.v[f] = tonumber(vals[L.first + j - 1]) end
end

-- Sliding log.
local function log_load(L)
  L.total, L.seq, L.newest = L.v.t or 0, L.v.s or 0, L.v.n
  L.cutoff = now - L.window
  L.gone, L.expired = 0, {}
  if not L.newest or L.newest <= L.cutoff then
    -- Every entry is at most newest: all have left the window.
    L.gone, L.all = L.total, true
  else
    L.expired = redis.call('ZRANGEBYSCORE', L.log, '-inf', d(L.cutoff))
    for _, m in ipairs(L.expired) do L.gone = L.gone + cost_of(m) end
  end
end

local function log_view(L)
  local used = L.total - L.gone
  local retry, reset = 0, 0
  if used + check > L.units then
    -- The oldest entries leave first: find the one whose departure frees
    -- enough for check to fit.
    local need, freed, from = used + check - L.units, 0, 0
    while retry == 0 do
      local page = redis.call('ZRANGEBYSCORE', L.log, '(' .. d(L.cutoff), '+inf', 'WITHSCORES', 'LIMIT', from, 32)
      if #page == 0 then break end
      for i = 1, #page, 2 do
        freed = freed + cost_of(page[i])
        if freed >= need then
          retry = tonumber(page[i + 1]) + L.window - now
          break
        end
      end
      from = from + 32
    end
  end
  if used > 0 then reset = L.newest + L.window - now end
  return used + check <= L.units, used, retry, reset
end

local function log_expire(L)
  if L.all or not L.v.t then
    redis.call('DEL', L.log) -- also a log left without its total
    L.total, L.newest = 0, nil
  elseif #L.expired > 0 then
    redis.call('ZREMRANGEBYSCORE', L.log, '-inf', d(L.cutoff))
    L.total = L.total - L.gone
  end
  L.gone, L.expired, L.all = 0, {}, false
end

local function log_add(L, at, c)
  L.seq = L.seq + 1
  redis.call('ZADD', L.log, d(at), d(c) .. ':' .. d(L.seq))
end

local function log_consume(L)
  log_expire(L)
  local count = redis.call('ZCARD', L.log)
  L.total = L.total + cost
  if count < bound then
    log_add(L, now, cost)
  else
    -- Coalesce within slots of ceil(window / (bound - 1)) µs.
    local slot = math.floor((L.window + bound - 2) / (bound - 1))
    local top = redis.call('ZRANGE', L.log, -1, -1, 'WITHSCORES')
    local tat = tonumber(top[2])
    local done = false
    if math.floor(tat / slot) ~= math.floor(now / slot) then
      local all = redis.call('ZRANGE', L.log, 0, -1, 'WITHSCORES')
      for i = #all - 3, 1, -2 do
        local at1, at2 = tonumber(all[i + 1]), tonumber(all[i + 3])
        if math.floor(at1 / slot) == math.floor(at2 / slot) then
          redis.call('ZREM', L.log, all[i], all[i + 2])
          log_add(L, at2, cost_of(all[i]) + cost_of(all[i + 2]))
          log_add(L, now, cost)
          done = true
          break
        end
      end
    end
    if not done then
      redis.call('ZREM', L.log, top[1])
      log_add(L, math.max(tat, now), cost_of(top[1]) + cost)
    end
  end
  if not L.newest or now > L.newest then L.newest = now end
end

local function log_refund(L)
  log_expire(L)
  local r = cost
  while r > 0 do
    local top = redis.call('ZPOPMAX', L.log)
    if #top == 0 then break end
    local c = cost_of(top[1])
    if c > r then
      log_add(L, tonumber(top[2]), c - r)
      L.total, r = L.total - r, 0
    else
      L.total, r = L.total - c, r - c
    end
  end
  local top = redis.call('ZRANGE', L.log, -1, -1, 'WITHSCORES')
  L.newest = tonumber(top[2])
end

-- Returns the state's remaining life in µs, or 0 once it is empty.
local function log_write(L)
  if L.total <= 0 then
    redis.call('DEL', L.log)
    redis.call('HDEL', KEYS[1], L.p .. 't', L.p .. 's', L.p .. 'n')
    return 0
  end
  redis.call('HSET', KEYS[1], L.p .. 't', d(L.total), L.p .. 's', d(L.seq), L.p .. 'n', d(L.newest))
  local life = L.newest + L.window - now
  redis.call('PEXPIRE', L.log, d(math.ceil(life / 1000) + 1))
  return life
end

-- Sliding window: two fixed buckets aligned to the Unix epoch.
local function window_load(L)
  local w = L.window
  L.start, L.curr, L.prev = L.v.s or 0, L.v.c or 0, L.v.p or 0
  local start = now - now % w
  if start == L.start + w then
    L.prev, L.curr, L.start = L.curr, 0, start
  elseif start > L.start then
    L.prev, L.curr, L.start = 0, 0, start
  end
  -- A clock that went back stays in the current bucket.
  L.elapsed = math.min(math.max(0, now - L.start), w - 1)
end

local function fit_at(p, room, w)
  if p <= room then return 0 end
  return math.ceil(w - room * w / p)
end

local function window_view(L)
  local w, e = L.window, L.elapsed
  local used = L.curr + math.ceil(L.prev * (w - e) / w)
  local retry, reset = 0, 0
  if used + check > L.units then
    local room = L.units - check - L.curr
    if room >= 0 then
      retry = fit_at(L.prev, room, w) - e
    else
      retry = w - e + fit_at(L.curr, L.units - check, w)
    end
  end
  if L.curr > 0 then
    reset = 2 * w - e
  elseif L.prev > 0 then
    reset = w - e
  end
  return used + check <= L.units, used, retry, reset
end

local function window_consume(L) L.curr = L.curr + cost end

local function window_refund(L)
  local r = math.min(cost, L.curr)
  L.curr = L.curr - r
  L.prev = math.max(0, L.prev - (cost - r))
end

local function window_write(L)
  local idle = nil
  if L.curr > 0 then
    idle = L.start + 2 * L.window
  elseif L.prev > 0 then
    idle = L.start + L.window
  end
  if not idle then
    redis.call('HDEL', KEYS[1], L.p .. 's', L.p .. 'c', L.p .. 'p')
    return 0
  end
  redis.call('HSET', KEYS[1], L.p .. 's', d(L.start), L.p .. 'c', d(L.curr), L.p .. 'p', d(L.prev))
  return idle - now
end

-- GCRA: a leaky bucket of units that drains at units per window.
local function drain_time(level, units, w) return math.ceil((level + 1) * w / units) end

local function gcra_load(L)
  local level, at = L.v.l or 0, L.v.t or 0
  if level > 0 and now >= at + drain_time(level, L.units, L.window) then
    level, at = 0, 0 -- expired, even if the clock later goes back
  end
  if now > at then
    level = math.max(0, level - (now - at) * L.units / L.window)
    at = now
  end
  L.level, L.at = level, at
end

local function gcra_view(L)
  local retry = 0
  if L.level + check > L.units then
    retry = math.ceil((L.level + check - L.units) * L.window / L.units)
  end
  return L.level + check <= L.units, math.ceil(L.level), retry, math.ceil(L.level * L.window / L.units)
end

local function gcra_consume(L) L.level = L.level + cost end
local function gcra_refund(L) L.level = math.max(0, L.level - cost) end

local function gcra_write(L)
  if L.level == 0 then
    redis.call('HDEL', KEYS[1], L.p .. 'l', L.p .. 't')
    return 0
  end
  redis.call('HSET', KEYS[1], L.p .. 'l', string.format('%.17g', L.level), L.p .. 't', d(L.at))
  return L.at + drain_time(L.level, L.units, L.window) - now
end

local algs = {
  l = {load = log_load, view = log_view, consume = log_consume, refund = log_refund, write = log_write},
  w = {load = window_load, view = window_view, consume = window_consume, refund = window_refund, write = window_write},
  g = {load = gcra_load, view = gcra_view, consume = gcra_consume, refund = gcra_refund, write = gcra_write},
}

local reply = {}
local function view_all()
  local ok = 1
  for i, L in ipairs(lims) do
    local allowed, used, retry, reset = algs[L.a].view(L)
    if not allowed then
      ok = 0
      if retry < 1 then retry = 1 end -- a deny always advises waiting
    else
      retry = 0
    end
    reply[2 + 4 * (i - 1)] = allowed and 1 or 0
    reply[3 + 4 * (i - 1)] = used
    reply[4 + 4 * (i - 1)] = retry
    reply[5 + 4 * (i - 1)] = math.max(0, reset)
  end
  reply[1] = ok
end

for _, L in ipairs(lims) do algs[L.a].load(L) end
view_all()

local step = nil
if op == 0 and reply[1] == 1 then
  step = 'consume'
elseif op == 2 then
  step = 'refund'
end
if step then
  local life = 0
  for _, L in ipairs(lims) do
    algs[L.a][step](L)
    life = math.max(life, algs[L.a].write(L))
  end
  if life > 0 then
    local ttl = math.ceil(life / 1000) + 1
    if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], d(ttl)) end
  end
  if step == 'refund' then
    redis.call('DEL', KEYS[2]) -- a refund ends deduplication
  elseif member then
    redis.call('ZADD', KEYS[2], d(now), member)
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', d(now - dedupe))
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(maxids + 1))
    redis.call('PEXPIRE', KEYS[2], d(math.ceil(dedupe / 1000) + 1))
  end
  view_all() -- the states as written
end

if repeated or step == 'consume' then
  -- Allowed (and recorded, unless a repeat): no limit advises waiting.
  reply[1] = 1
  for i = 1, n do reply[2 + 4 * (i - 1)], reply[4 + 4 * (i - 1)] = 1, 0 end
end
return reply
