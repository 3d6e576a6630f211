-- sliding_window.lua: the two-bucket sliding-window counter, one atomic check.
--
-- KEYS[1]  hash; s = start of the current bucket (Unix µs, a multiple of the
--          window), c = units in the current bucket, p = in the previous one
-- KEYS[2]  sorted set of recent request ids: member "<cost>:=<id>", score =
--          when allowed (Unix µs); deleted by a refund
-- ARGV[1]  op: "0" consume, "1" peek, "2" refund
-- ARGV[2]  cost, 1 to 10^15
-- ARGV[3]  units, 1 to 10^15
-- ARGV[4]  window, µs
-- ARGV[5]  now, Unix µs; "" reads the server's TIME
-- ARGV[6]  request id of a consume, or ""
-- ARGV[7]  dedupe window, µs: a consume whose "<cost>:=<id>" was allowed
--          less than this ago is a repeat, answered as allowed without
--          counting again
-- Reply:   {allowed 0|1, used, retry_after µs, reset_after µs}
--
-- used = c + ceil(p * (window - elapsed) / window). The key expires when used
-- falls to 0. Mirrors windowState in store/memory, float steps in the same
-- order, so both stores agree to the bit.

local op, cost, units, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local id, dedupe = ARGV[6], tonumber(ARGV[7])
local function d(n) return string.format('%d', n) end
local function remember(m)
  redis.call('ZADD', KEYS[2], d(now), m)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', d(now - dedupe))
  redis.call('PEXPIRE', KEYS[2], d(math.ceil(dedupe / 1000)))
end

local repeated, named = false, nil
if op == 0 and id ~= '' then
  named = d(cost) .. ':=' .. id
  local at = redis.call('ZSCORE', KEYS[2], named)
  if at and tonumber(at) > now - dedupe then repeated, op = true, 1 end
end

local st = redis.call('HMGET', KEYS[1], 's', 'c', 'p')
local start, curr, prev = tonumber(st[1]) or 0, tonumber(st[2]) or 0, tonumber(st[3]) or 0
local s0, c0, p0 = start, curr, prev

local bucket = now - now % window
if bucket == start + window then
  prev, curr, start = curr, 0, bucket
elseif bucket > start then
  prev, curr, start = 0, 0, bucket
end
-- A clock that went back (or a changed window) stays in the current bucket.
local elapsed = math.min(math.max(0, now - start), window - 1)

local function used()
  return curr + math.ceil(prev * (window - elapsed) / window)
end
-- The first elapsed time in a bucket at which a previous count p weighs at
-- most room.
local function fit_at(p, room)
  if p <= room then return 0 end
  return math.ceil(window - room * window / p)
end

local allowed
if op == 0 then
  allowed = used() + cost <= units
  if allowed then
    curr = curr + cost
    if named then remember(named) end
  end
else
  if op == 2 then
    redis.call('DEL', KEYS[2]) -- a refund ends deduplication
    local r = math.min(cost, curr)
    curr = curr - r
    prev = math.max(0, prev - (cost - r))
  end
  allowed = used() + 1 <= units
end

local retry = 0
if not allowed then
  local check = 1
  if op == 0 then check = cost end
  local room = units - check - curr
  if room >= 0 then
    retry = fit_at(prev, room) - elapsed
  else
    retry = window - elapsed + fit_at(curr, units - check)
  end
  if retry < 1 then retry = 1 end
end

local reset = 0
if curr > 0 then
  reset = 2 * window - elapsed
elseif prev > 0 then
  reset = window - elapsed
end

if start ~= s0 or curr ~= c0 or prev ~= p0 then
  if reset == 0 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HSET', KEYS[1], 's', d(start), 'c', d(curr), 'p', d(prev))
    redis.call('PEXPIRE', KEYS[1], d(math.ceil(reset / 1000)))
  end
end

if repeated then allowed, retry = true, 0 end
return {allowed and 1 or 0, used(), retry, reset}
