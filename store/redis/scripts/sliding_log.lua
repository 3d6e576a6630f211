-- sliding_log.lua: the exact sliding log, one atomic check.
--
-- KEYS[1]  log:  sorted set; score = when the request was allowed (Unix µs),
--                member = "<cost>:=<request id>", or "<cost>:<seq>" without
--                one (seq makes members unique, even within a microsecond)
-- KEYS[2]  meta: hash; t = running total of the log's costs, s = last seq,
--                n = score of the newest entry, f = n at the latest refund
-- ARGV[1]  op: "0" consume, "1" peek, "2" refund
-- ARGV[2]  cost, 1 to 10^15
-- ARGV[3]  units, 1 to 10^15
-- ARGV[4]  window, µs
-- ARGV[5]  now, Unix µs; "" reads the server's TIME
-- ARGV[6]  request id of a consume, or ""
-- ARGV[7]  dedupe window, µs: a consume whose member was added less than
--          this ago is a repeat, answered as allowed without counting again
-- Reply:   {allowed 0|1, used, retry_after µs, reset_after µs}
--
-- Invariant: meta.t is the sum of the costs in log and meta.n its newest
-- score, so an allowed consume needs no extra read. An entry allowed at t
-- counts while now < t + window. Every write ends by giving both keys the
-- TTL of one window after the newest entry (by score: a caller's clock may
-- go back). Mirrors logState in store/memory; numbers are formatted with %d
-- because Lua's default formatting keeps only 14 digits.

local op, cost, units, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function d(n) return string.format('%d', n) end
local function cost_of(member) return tonumber(string.match(member, '^(%d+):')) end

local meta = redis.call('HMGET', KEYS[2], 't', 's', 'n', 'f')
local total, seq, newest, refunded = tonumber(meta[1]) or 0, tonumber(meta[2]) or 0, tonumber(meta[3]), tonumber(meta[4]) or 0
local dirty = false

local cutoff = d(now - window)
if newest and newest <= now - window then
  -- Every entry is at most newest, so the whole log has left the window,
  -- whatever became of the log's key (a total kept without its log).
  redis.call('DEL', KEYS[1])
  total, dirty = 0, true
else
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  if #expired > 0 then
    for i = 1, #expired do total = total - cost_of(expired[i]) end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
    dirty = true
  end
end

local id, dedupe = ARGV[6], tonumber(ARGV[7])
local repeated, named = false, nil
if op == 0 and id ~= '' then
  named = d(cost) .. ':=' .. id
  local at = redis.call('ZSCORE', KEYS[1], named)
  if at then
    at = tonumber(at)
    if at > now - dedupe and at > refunded then
      repeated, op = true, 1
    else
      -- Allowed before the dedupe window or a refund: it keeps its units
      -- under a plain name, and the new consume takes the id.
      seq = seq + 1
      redis.call('ZREM', KEYS[1], named)
      redis.call('ZADD', KEYS[1], d(at), d(cost) .. ':' .. d(seq))
      dirty = true
    end
  end
end

local allowed
if op == 0 then
  allowed = total + cost <= units
  if allowed then
    local m = named
    if not m then
      seq = seq + 1
      m = d(cost) .. ':' .. d(seq)
    end
    redis.call('ZADD', KEYS[1], d(now), m)
    total = total + cost
    if not newest or now > newest then newest = now end
    dirty = true
  end
else
  if op == 2 then
    -- Newest first; entries of one instant are interchangeable, as a refund
    -- ends the deduplication of every request allowed until then.
    if total > 0 and newest > refunded then refunded = newest end
    local r = cost
    while r > 0 do
      local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      if #top == 0 then break end
      local c = cost_of(top[1])
      redis.call('ZREM', KEYS[1], top[1])
      if c > r then
        seq = seq + 1
        redis.call('ZADD', KEYS[1], top[2], d(c - r) .. ':' .. d(seq))
        total = total - r
        r = 0
      else
        total = total - c
        r = r - c
      end
      dirty = true
    end
    if dirty then
      local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      newest = tonumber(top[2])
    end
  end
  allowed = total + 1 <= units
end

if dirty then
  if total == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    newest = nil
  else
    redis.call('HSET', KEYS[2], 't', d(total), 's', d(seq), 'n', d(newest), 'f', d(refunded))
    -- After the writes: PEXPIRE on a key not yet created is lost, and a
    -- log emptied and refilled above (refund, dedupe) lost its TTL.
    local ttl = d(math.max(1, math.ceil((newest + window - now) / 1000)))
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end

local retry = 0
if not allowed then
  -- The oldest entries leave first: find the one whose departure frees
  -- enough for the checked cost to fit.
  local check = 1
  if op == 0 then check = cost end
  local need, freed, from = total + check - units, 0, 0
  while retry == 0 do
    local page = redis.call('ZRANGE', KEYS[1], from, from + 63, 'WITHSCORES')
    if #page == 0 then break end
    for i = 1, #page, 2 do
      freed = freed + cost_of(page[i])
      if freed >= need then
        retry = tonumber(page[i + 1]) + window - now
        break
      end
    end
    from = from + 64
  end
  if retry < 1 then retry = 1 end
end

local reset = 0
if newest and total > 0 then reset = newest + window - now end

if repeated then allowed, retry = true, 0 end
return {allowed and 1 or 0, total, retry, reset}
