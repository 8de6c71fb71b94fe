-- Helpers of the scripts that write, prepended after common.lua.
local delta = {versions = 0, stored = 0, original = 0, checkpoints = 0}

local function split(s)
  local out = {}
  if not s or s == '' then return out end
  for part in string.gmatch(s .. SEP, '([^\031]*)\031') do out[#out + 1] = part end
  return out
end

local function vless(a, b)  -- decimal version strings, exact past 2^53
  if #a ~= #b then return #a < #b end
  return before(a, b)
end

-- The score of version v in its z set. Scores are doubles, which stop telling versions apart
-- past 2^53: equal scores fall back to member order, numeric between members of one length.
-- A version that rounds up to 10^#v, the next length's first score, is kept just below it.
local function vscore(v)
  if #v < 16 then return v end
  local top = 10 ^ #v  -- exact: 5^#v < 2^53
  if tonumber(v) < top then return v end
  local _, e = math.frexp(top)
  return string.format('%.17g', top - 2 ^ (e - 53))  -- the double just below
end

local function inc(s)
  local d = {string.byte(s, 1, -1)}
  local i = #d
  while i >= 1 and d[i] == 57 do d[i] = 48; i = i - 1 end
  if i == 0 then table.insert(d, 1, 49) else d[i] = d[i] + 1 end
  return string.char(unpack(d))
end

local function meta_fields(m)  -- size, orig, created, compression, write id
  return string.match(m, '^(%d+)\031(%d+)\031([^\031]*)\031([^\031]*)\031[^\031]*\031[^\031]*\031([^\031]*)\031')
end

local function parse_sum(s)  -- the nine figures, then the joined tags
  return {string.match(s, '^([^\031]*)\031([^\031]*)\031([^\031]*)\031([^\031]*)\031' ..
    '([^\031]*)\031([^\031]*)\031([^\031]*)\031([^\031]*)\031([^\031]*)\031(.*)$')}
end

local function retag(sid, old, new)  -- joined tag strings; counts in `tags` are negative
  local gone = {}
  for _, tag in ipairs(split(old)) do gone[tag] = true end
  for _, tag in ipairs(split(new)) do
    if gone[tag] then gone[tag] = nil
    elseif redis.call('ZADD', G .. 't:' .. tag, 0, sid) == 1 then
      redis.call('ZINCRBY', G .. 'tags', -1, tag)
    end
  end
  for tag in pairs(gone) do
    if redis.call('ZREM', G .. 't:' .. tag, sid) == 1 then
      if tonumber(redis.call('ZINCRBY', G .. 'tags', 1, tag)) >= 0 then
        redis.call('ZREM', G .. 'tags', tag)
      end
    end
  end
end

local function flush()  -- one HINCRBY per changed counter, at the end of a script
  for field, d in pairs(delta) do
    if d ~= 0 then redis.call('HINCRBY', G .. 'stats', field, d) end
  end
end

-- Remove a state from every index and delete its keys (not its checkpoints).
local function wipe(sid, h, z)
  local s = redis.call('HGET', G .. 'sum', sid)
  if s then
    local p = parse_sum(s)
    delta.versions = delta.versions - p[2]
    delta.stored = delta.stored - p[8]
    delta.original = delta.original - p[9]
    retag(sid, p[10], '')
    redis.call('HDEL', G .. 'sum', sid)
    redis.call('ZREM', G .. 'ids', sid)
    redis.call('ZREM', G .. 'upd', sid)
    redis.call('ZREM', G .. 'nv', sid)
    if p[7] ~= '' then redis.call('ZREM', G .. 'exp', sid) end
  end
  redis.call('DEL', h, z)
  return s ~= false
end

-- The fields of h that describe the state as a whole; `old` is what the indexes last saw.
local STATE = {'cur', 'exp', 'n', 'sb', 'ob', 'T', 'M'}
local function state_of(f, indexed)
  return {cur = f[1], exp = f[2] or '', n = tonumber(f[3]), sb = tonumber(f[4]),
          ob = tonumber(f[5]), tags = f[6] or '', meta = f[7], indexed = indexed}
end

-- Write the summary and index entries of a state from its latest version, touching only the
-- indexes that changed since `old` (a state_of table, or {} for a state not indexed yet).
local function reindex(sid, s, old)
  local size, orig, created, comp = meta_fields(s.meta)
  if not old.indexed then redis.call('ZADD', G .. 'ids', 0, sid) end
  if s.tags ~= (old.tags or '') then retag(sid, old.tags or '', s.tags) end
  redis.call('HSET', G .. 'sum', sid,
             table.concat({s.cur, s.n, created, size, orig, comp, s.exp, s.sb, s.ob, s.tags}, SEP))
  redis.call('ZADD', G .. 'upd', created, sid)
  if s.n ~= old.n then redis.call('ZADD', G .. 'nv', s.n, sid) end
  if s.exp ~= '' then redis.call('ZADD', G .. 'exp', s.exp, sid)
  elseif (old.exp or '') ~= '' then redis.call('ZREM', G .. 'exp', sid) end
end

-- Drop the k oldest versions; returns their stored and original bytes and the oldest kept.
local function drop(h, z, k)
  local old = redis.call('ZRANGE', z, 0, k)  -- the dropped and the next one
  local sb, ob, dead = 0, 0, {}
  for i = 1, k do
    local v = old[i]
    local size, orig, _, _, wid = meta_fields(redis.call('HGET', h, 'm' .. v))
    sb, ob = sb + size, ob + orig
    dead[#dead + 1] = 'f' .. v
    dead[#dead + 1] = 'm' .. v
    dead[#dead + 1] = 't' .. v
    if wid ~= '' then dead[#dead + 1] = 'w:' .. wid end
  end
  redis.call('HDEL', h, unpack(dead))
  redis.call('ZREMRANGEBYRANK', z, 0, k - 1)
  delta.versions = delta.versions - k
  delta.stored = delta.stored - sb
  delta.original = delta.original - ob
  return sb, ob, old[k + 1]
end
