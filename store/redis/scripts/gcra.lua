-- gcra.lua: GCRA as a leaky bucket, one atomic check.
--
-- KEYS[1]  hash; l = level in units (a float, kept with 17 significant
--          digits so it round-trips exactly), t = when l was computed (Unix µs)
-- KEYS[2]  sorted set of recent request ids: member "<cost>:=<id>", score =
--          when allowed (Unix µs); deleted by a refund
-- ARGV[1]  op: "0" consume, "1" peek, "2" refund
-- ARGV[2]  cost, 1 to 10^15
-- ARGV[3]  units, 1 to 10^15 (the bucket's capacity)
-- ARGV[4]  window, µs (the bucket drains units per window)
-- ARGV[5]  now, Unix µs; "" reads the server's TIME
-- ARGV[6]  request id of a consume, or ""
-- ARGV[7]  dedupe window, µs: a consume whose "<cost>:=<id>" was allowed
--          less than this ago is a repeat, answered as allowed without
--          counting again
-- Reply:   {allowed 0|1, used, retry_after µs, reset_after µs}
--
-- Only an allowed consume and a refund write: composing two fractional
-- drains rounds differently from one, so the stores persist at the same
-- steps. The key expires once the level has surely drained to 0. Mirrors
-- gcraState in store/memory, float steps in the same order.

local op, cost, units, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function d(n) return string.format('%d', n) end

local id, dedupe = ARGV[6], tonumber(ARGV[7])
local repeated, named = false, nil
if op == 0 and id ~= '' then
  named = d(cost) .. ':=' .. id
  local at = redis.call('ZSCORE', KEYS[2], named)
  if at and tonumber(at) > now - dedupe then repeated, op = true, 1 end
end

local st = redis.call('HMGET', KEYS[1], 'l', 't')
local level, at = tonumber(st[1]) or 0, tonumber(st[2]) or 0
if level > 0 and now >= at + math.ceil((level + 1) * window / units) then
  -- Expired (the TTL runs on the server's clock, a caller's may differ):
  -- empty, even if the clock later goes back.
  level, at = 0, 0
  redis.call('DEL', KEYS[1])
end
if now > at then
  level = math.max(0, level - (now - at) * units / window)
  at = now
end

local allowed, write
if op == 0 then
  allowed = level + cost <= units
  if allowed then
    level = level + cost
    write = true
    if named then
      redis.call('ZADD', KEYS[2], d(now), named)
      redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', d(now - dedupe))
      redis.call('PEXPIRE', KEYS[2], d(math.ceil(dedupe / 1000)))
    end
  end
else
  if op == 2 then
    level = math.max(0, level - cost)
    write = true
    redis.call('DEL', KEYS[2]) -- a refund ends deduplication
  end
  allowed = level + 1 <= units
end

if write then
  if level == 0 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HSET', KEYS[1], 'l', string.format('%.17g', level), 't', d(at))
    local idle = math.ceil((level + 1) * window / units)
    redis.call('PEXPIRE', KEYS[1], d(math.ceil(idle / 1000)))
  end
end

local retry = 0
if not allowed then
  local check = 1
  if op == 0 then check = cost end
  retry = math.ceil((level + check - units) * window / units)
  if retry < 1 then retry = 1 end
end

if repeated then allowed, retry = true, 0 end
return {allowed and 1 or 0, math.ceil(level), retry, math.ceil(level * window / units)}
