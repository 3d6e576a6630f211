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
-- read. Every write makes sure of the TTLs of what it wrote in this script,
-- after writing: a log lives until its newest entry leaves the window, the
-- hash as long as its longest-lived limit and at least as long as its logs,
-- the ids for the dedupe window. A TTL only grows, and when it must, it
-- gets headroom, at most a second (see keep), so that most writes of a
-- busy key read TTLs instead of writing them and callers whose clocks lag
-- still find it; idle state may so outlive its window by up to a second.
-- Each limit's state is also judged by time alone, so a field that
-- outlives its TTL-less key never counts. Mirrors store/memory
-- step for step, floats in the same order, so both stores agree to the
-- bit. Integers (times, costs, totals, TTLs, all below 2^53) go to
-- redis.call as strings made with %d (d): Redis 7.0 formats a Lua number
-- with snprintf's %.17g, whose multi-precision path cost about a tenth of
-- the script's instructions, and Lua's own formatting keeps 14 digits.
-- GCRA's level, a fraction, goes as a number: %.17g round-trips it.

local op, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local id, dedupe, bound, maxids = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n = (#ARGV - 7) / 3

local function d(x) return string.format('%d', x) end

-- keep makes key live at least life µs more (as a TTL rounded up to the
-- millisecond, plus one). A TTL only grows, and one that must grow gets an
-- eighth more than needed, at least an eighth of the longest window
-- (headroom, set once the limits are known), at most a second. So the next
-- writes of a busy key only read it (PTTL) instead of writing it, which its
-- replicas would repeat; and a caller whose clock is behind the writer's
-- by less than the headroom still finds the state the writer kept, even
-- where the writer's clock gave it microseconds to live. A long window's
-- state still goes a second after it ends. Returns the life the key now
-- has, µs.
local headroom
local function keep(key, life)
  local need = math.ceil(life / 1000) + 1
  local ttl = redis.call('PTTL', key)
  if ttl < need then
    ttl = need + math.min(math.max(math.floor(need / 8), headroom), 1000)
    redis.call('PEXPIRE', key, d(ttl))
  end
  return (ttl - 1) * 1000
end
local function cost_of(m) return tonumber(string.match(m, '^(%d+):')) end

-- A consume under an id is a repeat when "<cost>:<id>" was allowed less
-- than dedupe ago. The id is looked up only when it matters: an allowed
-- consume records it with ZADD NX first, which finds an existing one (a
-- retry that ran before, or a repeat), and a denied one looks it up.
local repeated, member = false, nil
if op == 0 and id ~= '' then member = ARGV[2] .. ':' .. id end
local function seen()
  local at = redis.call('ZSCORE', KEYS[2], member)
  return at and tonumber(at) > now - dedupe
end
local check = cost
if op ~= 0 then check = 1 end
local walk = true -- log_view walks a log for the retry time of a deny

-- Load every limit's fields with one HMGET: L.f1, L.f2 and L.f3 (none
-- for GCRA) name limit L's fields, L.v1, L.v2 and L.v3 hold their values
-- (nil when missing). Plain fields of L, not tables of their own: every
-- table or function a call makes costs Redis about 2,000 instructions
-- (callgrind), a fifth of what a redis.call costs.
local lims, names, longest = {}, {}, 0
for i = 1, n do
  local a = ARGV[5 + 3 * i]
  a = (a == '0' and 'l') or (a == '1' and 'w') or 'g'
  local p = a .. ARGV[7 + 3 * i] .. ':' -- the window as sent: decimal µs
  local f1, f2, f3
  if a == 'l' then
    f1, f2, f3 = p .. 't', p .. 's', p .. 'n'
  elseif a == 'w' then
    f1, f2, f3 = p .. 's', p .. 'c', p .. 'p'
  else
    f1, f2 = p .. 'l', p .. 't'
  end
  local L = {a = a, units = tonumber(ARGV[6 + 3 * i]), window = tonumber(ARGV[7 + 3 * i]), log = KEYS[2 + i], f1 = f1, f2 = f2, f3 = f3}
  names[#names + 1], names[#names + 2] = f1, f2
  if f3 then names[#names + 1] = f3 end
  lims[i] = L
  longest = math.max(longest, L.window)
end
headroom = math.floor(longest / 8000)
local vals = redis.call('HMGET', KEYS[1], unpack(names))
local off = 0
for _, L in ipairs(lims) do
  L.v1, L.v2 = tonumber(vals[off + 1]), tonumber(vals[off + 2])
  off = off + 2
  if L.f3 then
    L.v3 = tonumber(vals[off + 1])
    off = off + 1
  end
end

-- Sliding log.
local function sliding_log()
  local function log_load(L)
    L.total, L.seq, L.newest = L.v1 or 0, L.v2 or 0, L.v3
    L.cutoff = now - L.window
    L.gone, L.expired = 0, nil
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
    if used + check > L.units and walk then
      -- The oldest entries leave first: find the one whose departure frees
      -- enough for check to fit.
      local need, freed, from = used + check - L.units, 0, 0
      while retry == 0 do
        local page = redis.call('ZRANGEBYSCORE', L.log, '(' .. d(L.cutoff), '+inf', 'WITHSCORES', 'LIMIT', d(from), '32')
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
      if retry == 0 and freed < used then
        -- The log ran out first: it holds only freed units in the window,
        -- and the rest of its total went with entries that were lost
        -- (evicted, or expired for a caller whose clock is behind their
        -- writer's by more than keep's headroom). Count what it holds, so
        -- that lost units never deny, nor advise a wait of nothing; the
        -- next write stores the mended total.
        L.total = L.total - (used - freed)
        return log_view(L)
      end
    end
    if used > 0 then reset = L.newest + L.window - now end
    return used + check <= L.units, used, retry, reset
  end

  local function log_expire(L)
    if L.all or not L.v1 then
      redis.call('DEL', L.log) -- also a log left without its total
      L.total, L.newest = 0, nil
    elseif L.expired and #L.expired > 0 then
      redis.call('ZREMRANGEBYSCORE', L.log, '-inf', d(L.cutoff))
      L.total = L.total - L.gone
    end
    L.gone, L.expired, L.all = 0, nil, false
  end

  local function log_add(L, at, c)
    L.seq = L.seq + 1
    redis.call('ZADD', L.log, d(at), string.format('%d:%d', c, L.seq))
  end

  local function log_consume(L)
    log_expire(L)
    -- Every entry costs at least 1: a total under the bound needs no count.
    local count = L.total
    if count >= bound then count = redis.call('ZCARD', L.log) end
    L.total = L.total + cost
    if count < bound then
      log_add(L, now, cost)
    else
      -- Coalesce within slots of ceil(window / (bound - 1)) µs.
      local slot = math.floor((L.window + bound - 2) / (bound - 1))
      local top = redis.call('ZRANGE', L.log, '-1', '-1', 'WITHSCORES')
      local tat = tonumber(top[2])
      local done = false
      if math.floor(tat / slot) ~= math.floor(now / slot) then
        local all = redis.call('ZRANGE', L.log, '0', '-1', 'WITHSCORES')
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
    local top = redis.call('ZRANGE', L.log, '-1', '-1', 'WITHSCORES')
    L.newest = tonumber(top[2])
    -- An empty log holds nothing, whatever the total said (a log that
    -- expired by its TTL before the hash did).
    if not L.newest then L.total = 0 end
  end

  -- Returns the state's remaining life in µs, or 0 once it is empty.
  local function log_write(L)
    if L.total <= 0 then
      redis.call('DEL', L.log)
      redis.call('HDEL', KEYS[1], L.f1, L.f2, L.f3)
      return 0
    end
    redis.call('HSET', KEYS[1], L.f1, d(L.total), L.f2, d(L.seq), L.f3, d(L.newest))
    -- The hash outlives the log: it gets at least the log's life.
    return keep(L.log, L.newest + L.window - now)
  end
  return {load = log_load, view = log_view, consume = log_consume, refund = log_refund, write = log_write}
end

-- Sliding window: two fixed buckets aligned to the Unix epoch.
local function sliding_window()
  local function window_load(L)
    local w = L.window
    L.start, L.curr, L.prev = L.v1 or 0, L.v2 or 0, L.v3 or 0
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
      redis.call('HDEL', KEYS[1], L.f1, L.f2, L.f3)
      return 0
    end
    redis.call('HSET', KEYS[1], L.f1, d(L.start), L.f2, d(L.curr), L.f3, d(L.prev))
    return idle - now
  end
  return {load = window_load, view = window_view, consume = window_consume, refund = window_refund, write = window_write}
end

-- GCRA: a leaky bucket of units that drains at units per window.
local function gcra()
  local function drain_time(level, units, w) return math.ceil((level + 1) * w / units) end

  local function gcra_load(L)
    local level, at = L.v1 or 0, L.v2 or 0
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
      redis.call('HDEL', KEYS[1], L.f1, L.f2)
      return 0
    end
    redis.call('HSET', KEYS[1], L.f1, L.level, L.f2, d(L.at)) -- the level as %.17g: round-trips
    return L.at + drain_time(L.level, L.units, L.window) - now
  end
  return {load = gcra_load, view = gcra_view, consume = gcra_consume, refund = gcra_refund, write = gcra_write}
end

-- Each algorithm's functions are made only when a limit uses it.
local algs = {}
for _, L in ipairs(lims) do
  if not algs[L.a] then
    algs[L.a] = (L.a == 'l' and sliding_log()) or (L.a == 'w' and sliding_window()) or gcra()
  end
end

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

if member then
  if reply[1] == 1 then
    -- Record the id before any write; one already there within the
    -- dedupe window makes this a repeat, answered as a peek.
    if redis.call('ZADD', KEYS[2], 'NX', d(now), member) == 0 then
      if seen() then repeated = true else redis.call('ZADD', KEYS[2], d(now), member) end
    end
  else
    repeated = seen()
  end
  if repeated then
    op, check = 1, 1
    view_all()
  end
end

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
  if life > 0 then keep(KEYS[1], life) end
  if step == 'refund' then
    redis.call('DEL', KEYS[2]) -- a refund ends deduplication
  elseif member then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', d(now - dedupe))
    redis.call('ZREMRANGEBYRANK', KEYS[2], '0', d(-(maxids + 1)))
    keep(KEYS[2], dedupe)
  end
  -- The states as written; an allowed consume's answer advises no wait,
  -- so its logs need no walk for one.
  walk = step ~= 'consume'
  view_all()
end

if repeated or step == 'consume' then
  -- Allowed (and recorded, unless a repeat): no limit advises waiting.
  reply[1] = 1
  for i = 1, n do reply[2 + 4 * (i - 1)], reply[4 + 4 * (i - 1)] = 1, 0 end
end
return reply
