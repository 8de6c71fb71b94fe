-- Prepended to every statehub script. ARGV[1] is the namespace, ARGV[2] the store clock.
-- Layout (N = namespace):
--   N:{<16 hex of sha1(id)>}:h:<id>  hash: last, cur, exp, pb; per version n: f<n> frame,
--                                    m<n> packed metadata, t<n> tags; w:<write_id> -> n
--   N:{..}:z:<id>   zset of kept versions       N:{..}:c:<id>  checkpoints (never expire)
--   N:{_}:ids (lex) upd (updated_at) exp (expires_at) nv (version count) sum (id -> summary)
--   N:{_}:t:<tag> (set of ids) tags (tag -> -count) stats (running counters) cp (cid -> id)
-- Packed metadata: size US orig US created US compression US checksum US ttl US wid US json
-- Summary: cur US count US created US size US orig US comp US exp US sb US ob [US tag]...
-- Strings are compared with byte loops, never with '<': Lua compares strings with strcoll.
local N = ARGV[1]
local G = N .. ':{_}:'
local NOW = tonumber(ARGV[2])
local SEP = '\031'
local delta = {versions = 0, stored = 0, original = 0, checkpoints = 0}

local function skey(kind, sid)
  return N .. ':{' .. string.sub(redis.sha1hex(sid), 1, 16) .. '}:' .. kind .. ':' .. sid
end

local function split(s)
  local out = {}
  if not s or s == '' then return out end
  for part in string.gmatch(s .. SEP, '([^\031]*)\031') do out[#out + 1] = part end
  return out
end

local function live(exp)
  return not exp or exp == '' or tonumber(exp) > NOW
end

local function before(a, b)  -- byte order, as ZRANGEBYLEX and Python's str order
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
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

local function tag_set(list, from)
  local set = {}
  for i = from, #list do set[list[i]] = true end
  return set
end

local function untag(sid, tags)
  for tag in pairs(tags) do
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
    local p = split(s)
    delta.versions = delta.versions - tonumber(p[2])
    delta.stored = delta.stored - tonumber(p[8])
    delta.original = delta.original - tonumber(p[9])
    untag(sid, tag_set(p, 10))
    redis.call('HDEL', G .. 'sum', sid)
    redis.call('ZREM', G .. 'ids', sid)
    redis.call('ZREM', G .. 'upd', sid)
    redis.call('ZREM', G .. 'nv', sid)
    if p[7] ~= '' then redis.call('ZREM', G .. 'exp', sid) end
  end
  redis.call('DEL', h, z)
  return s ~= false
end

-- Rewrite the state's summary and index entries from its latest version; ds/do are the
-- changes to the state's stored/original byte totals since the summary was last written.
local function reindex(sid, h, z, ds, dor)
  local f = redis.call('HMGET', h, 'cur', 'exp')
  local cur, exp = f[1], f[2] or ''
  local r = redis.call('HMGET', h, 'm' .. cur, 't' .. cur)
  local size, orig, created, comp = meta_fields(r[1])
  local count = redis.call('ZCARD', z)
  local old = redis.call('HGET', G .. 'sum', sid)
  local sb, ob, oldexp, oldtags = ds, dor, '', {}
  if old then
    local p = split(old)
    sb, ob, oldexp = sb + tonumber(p[8]), ob + tonumber(p[9]), p[7]
    oldtags = tag_set(p, 10)
  end
  local entry = table.concat({cur, count, created, size, orig, comp, exp, sb, ob}, SEP)
  if r[2] ~= '' then entry = entry .. SEP .. r[2] end
  local gone = {}
  for tag in pairs(oldtags) do gone[tag] = true end
  for _, tag in ipairs(split(r[2])) do
    if gone[tag] then gone[tag] = nil
    elseif redis.call('SADD', G .. 't:' .. tag, sid) == 1 then
      redis.call('ZINCRBY', G .. 'tags', -1, tag)
    end
  end
  untag(sid, gone)
  redis.call('HSET', G .. 'sum', sid, entry)
  redis.call('ZADD', G .. 'ids', 0, sid)
  redis.call('ZADD', G .. 'upd', created, sid)
  redis.call('ZADD', G .. 'nv', count, sid)
  if exp ~= '' then redis.call('ZADD', G .. 'exp', exp, sid)
  elseif oldexp ~= '' then redis.call('ZREM', G .. 'exp', sid) end
end

-- Drop versions past the newest `keep`; returns how many and the bytes they held.
local function drop_oldest(h, z, keep)
  local total = redis.call('ZCARD', z)
  if total <= keep then return 0, 0, 0 end
  local old = redis.call('ZRANGE', z, 0, total - keep - 1)
  local sb, ob = 0, 0
  for _, v in ipairs(old) do
    local size, orig, _, _, wid = meta_fields(redis.call('HGET', h, 'm' .. v))
    sb, ob = sb + tonumber(size), ob + tonumber(orig)
    redis.call('HDEL', h, 'f' .. v, 'm' .. v, 't' .. v, 'w:' .. wid)
  end
  redis.call('ZREMRANGEBYRANK', z, 0, total - keep - 1)
  redis.call('HSET', h, 'pb', redis.call('ZRANGE', z, 0, 0)[1])
  delta.versions = delta.versions - #old
  delta.stored = delta.stored - sb
  delta.original = delta.original - ob
  return #old, sb, ob
end
