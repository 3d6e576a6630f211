-- reset.lua: forget every state of a key, atomically.
--
-- KEYS[1]    state: the key's hash (see check.lua)
-- KEYS[2]    ids: the key's request ids
-- KEYS[3..]  the key's sliding logs, as the caller found them named in the
--            hash's fields
-- Reply:     {} when done; otherwise the windows (µs) of sliding logs that
--            the hash names but KEYS lacks (a log created since the caller
--            looked): nothing was deleted, and the caller calls again with
--            them.
--
-- A script may touch only the keys it is given, so the caller reads the
-- hash's fields first (HKEYS) and names the logs they imply.

local given = {}
for i = 3, #KEYS do given[KEYS[i]] = true end
local base = string.sub(KEYS[1], 1, -3) -- without ":s"
local missing = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local w = string.match(f, '^l(%d+):t$')
  if w and not given[base .. ':l' .. w] then missing[#missing + 1] = w end
end
if #missing > 0 then return missing end
redis.call('DEL', unpack(KEYS))
return {}
