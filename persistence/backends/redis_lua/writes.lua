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
    elseif redis.call('SADD', G .. 't:' .. tag, sid) == 1 then
      redis.call('ZINCRBY', G .. 'tags', -1, tag)
    end
  end
  for tag in pairs(gone) do
    if redis.call('SREM', G .. 't:' .. tag, sid) == 1 then
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

-- Write the state's summary and index entries for its latest version `cur`; ds/dor are the
-- changes to the state's stored/original byte totals since the summary was last written.
local function reindex(sid, cur, meta, tags, exp, count, ds, dor)
  local size, orig, created, comp = meta_fields(meta)
  local old = redis.call('HGET', G .. 'sum', sid)
  local sb, ob, oldexp, oldtags, oldcount = ds, dor, '', '', -1
  if old then
    local p = parse_sum(old)
    sb, ob, oldexp, oldtags, oldcount = sb + p[8], ob + p[9], p[7], p[10], tonumber(p[2])
  else
    redis.call('ZADD', G .. 'ids', 0, sid)
  end
  if tags ~= oldtags then retag(sid, oldtags, tags) end
  redis.call('HSET', G .. 'sum', sid,
             table.concat({cur, count, created, size, orig, comp, exp, sb, ob, tags}, SEP))
  redis.call('ZADD', G .. 'upd', created, sid)
  if count ~= oldcount then redis.call('ZADD', G .. 'nv', count, sid) end
  if exp ~= '' then redis.call('ZADD', G .. 'exp', exp, sid)
  elseif oldexp ~= '' then redis.call('ZREM', G .. 'exp', sid) end
end

local function reindex_latest(sid, h, z, ds, dor)  -- after a delete or a prune
  local f = redis.call('HMGET', h, 'cur', 'exp')
  local r = redis.call('HMGET', h, 'm' .. f[1], 't' .. f[1])
  reindex(sid, f[1], r[1], r[2], f[2] or '', redis.call('ZCARD', z), ds, dor)
end

-- Drop versions past the newest `keep` (the caller stores the new pb it returns); returns
-- how many were dropped, their bytes, the oldest version kept and how many are kept.
local function drop_oldest(h, z, keep)
  local total = redis.call('ZCARD', z)
  if total <= keep then return 0, 0, 0, false, total end
  local old = redis.call('ZRANGE', z, 0, total - keep)  -- the dropped and the next one
  local sb, ob, dead = 0, 0, {}
  for i = 1, total - keep do
    local v = old[i]
    local size, orig, _, _, wid = meta_fields(redis.call('HGET', h, 'm' .. v))
    sb, ob = sb + size, ob + orig
    dead[#dead + 1] = 'f' .. v
    dead[#dead + 1] = 'm' .. v
    dead[#dead + 1] = 't' .. v
    if wid ~= '' then dead[#dead + 1] = 'w:' .. wid end
  end
  redis.call('HDEL', h, unpack(dead))
  redis.call('ZREMRANGEBYRANK', z, 0, total - keep - 1)
  delta.versions = delta.versions - (total - keep)
  delta.stored = delta.stored - sb
  delta.original = delta.original - ob
  return total - keep, sb, ob, old[#old], keep
end
