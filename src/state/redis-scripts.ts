/*
 * The Lua scripts RedisStateStore runs: each is one atomic step on the server (Redis runs a script
 * without interleaving other commands), which is what makes compare-and-set and the lease safe
 * across processes.
 */

// One atomic step: Redis runs a script without interleaving other commands. A stored value that is
// not a well-formed record counts as absent (the same checks as asStateRecord), so a
// compare-and-set from null replaces it and pools recover without a human, like FileStateStore.
// The caller builds the new JSON (version = expected + 1), which keeps cjson's encoder out of it.
// A third reply element says a value that was not a record was replaced (reported as corrupt).
export const COMPARE_AND_SET = `
local function isint(v) return type(v) == 'number' and v == math.floor(v) end
local function version(raw)
  if not raw then return nil end
  local ok, r = pcall(cjson.decode, raw)
  if not ok or type(r) ~= 'table' then return nil end
  if not (isint(r.version) and r.version >= 1) then return nil end
  if not (type(r.primary) == 'string' and #r.primary > 0) then return nil end
  if not (r.systemId == cjson.null or type(r.systemId) == 'string') then return nil end
  if not (r.timeline == cjson.null or isint(r.timeline)) then return nil end
  if not (isint(r.epoch) and type(r.updatedAt) == 'string' and type(r.reason) == 'string') then return nil end
  return r.version
end
local raw = redis.call('GET', KEYS[1])
local current = version(raw)
local expected = nil
if ARGV[1] ~= '' then expected = tonumber(ARGV[1]) end
if current ~= expected then
  if current == nil then return {0} end
  return {0, raw}
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
if raw and current == nil then return {1, ARGV[2], 'replaced'} end
return {1, ARGV[2]}
`

// The lease: taken when free, renewed by its holder, never taken from another holder before it expires.
export const ACQUIRE_LEASE = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`
export const RELEASE_LEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`
export const PUBLISH = `return redis.call('PUBLISH', KEYS[1], ARGV[1])`
