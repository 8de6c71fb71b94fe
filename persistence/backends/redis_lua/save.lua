-- Apply N writes, all or nothing. KEYS: h, z per write. ARGV after the common two, per write:
-- sid, version ('0' = next), keep ('0' = all), inherit tags ('1'/'0'), write id, expires_at
-- ('' = none), frame, packed metadata, tags. Refusing (a conflict) happens before any write.
local W = 9
local n = #KEYS / 2
local states, plan = {}, {}

for i = 1, n do  -- plan: read each state once, decide every version number, write nothing
  local a = 2 + (i - 1) * W
  local sid, ver, wid = ARGV[a + 1], ARGV[a + 2], ARGV[a + 5]
  local h = KEYS[2 * i - 1]
  local st = states[sid]
  if not st then
    local f = redis.call('HMGET', h, 'last', 'F', unpack(STATE))
    if f[3] and live(f[4]) then
      st = state_of({unpack(f, 3)}, true)
      st.live, st.last, st.F = true, f[1], f[2]
    else  -- new or expired: it starts afresh, after wipe() below
      st = {live = false, last = '0', n = 0, sb = 0, ob = 0, exp = '', tags = '', cur = false}
    end
    -- Earlier writes of this batch may prune versions a write id points at: `maxdrop` is
    -- how far pruning has eaten into the versions stored before the batch (negative: none).
    st.wids, st.writes, st.maxdrop = {}, 0, -math.huge
    states[sid] = st
  end
  local dup = false
  if wid ~= '' then
    local mine = st.wids[wid]
    if mine then
      if mine[1] >= st.maxdrop then dup = mine[2] end
    elseif st.live then
      dup = redis.call('HGET', h, 'w:' .. wid)
      if dup and st.writes > 0 then
        local z = KEYS[2 * i]
        if redis.call('ZRANK', z, dup) - redis.call('ZCARD', z) < st.maxdrop then dup = false end
      end
    end
  end
  if dup then
    plan[i] = {dup = dup}
  else
    if ver ~= '0' and not vless(st.last, ver) then
      return redis.error_reply('STATEHUB_CONFLICT ' .. ver .. ' ' .. st.last .. ' ' .. sid)
    end
    local v = ver ~= '0' and ver or inc(st.last)
    local tags = ARGV[a + 9]
    if ARGV[a + 4] == '1' then tags = st.ptags or st.tags end  -- T mirrors the latest's
    st.last, st.ptags = v, tags
    if wid ~= '' then st.wids[wid] = {st.writes, v} end
    st.writes = st.writes + 1
    local keep = tonumber(ARGV[a + 3])
    if keep > 0 then st.maxdrop = math.max(st.maxdrop, st.writes - keep) end
    plan[i] = {v = v, tags = tags}
  end
end

local out = {}
for i = 1, n do
  local a = 2 + (i - 1) * W
  local sid, wid, exp = ARGV[a + 1], ARGV[a + 5], ARGV[a + 6]
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local st, p = states[sid], plan[i]
  if not st.live and not st.wiped then  -- expired or new: whatever is left goes first
    wipe(sid, h, z)
    st.wiped = true
  end
  if p.dup then
    local r = redis.call('HMGET', h, 'm' .. p.dup, 't' .. p.dup, 'exp')
    out[i] = {p.dup, r[3] or '', r[1], r[2]}
  else
    local v, meta = p.v, ARGV[a + 8]
    local size, orig = meta_fields(meta)
    local keep = tonumber(ARGV[a + 3])
    -- The latest frame lives in F (and its metadata also in M, T) so that a load is one
    -- HMGET; the frame it replaces moves to its numbered field unless pruning drops it now.
    local fields = {'F', ARGV[a + 7], 'M', meta, 'T', p.tags, 'm' .. v, meta, 't' .. v, p.tags,
                    'last', v, 'cur', v}
    if st.cur and st.F and keep ~= 1 then
      fields[#fields + 1] = 'f' .. st.cur
      fields[#fields + 1] = st.F
    end
    redis.call('ZADD', z, vscore(v), v)
    local s = {cur = v, exp = exp, n = st.n + 1, sb = st.sb + size, ob = st.ob + orig,
               tags = p.tags, meta = meta}
    if keep > 0 and s.n > keep then
      local sb, ob, pb = drop(h, z, s.n - keep)
      s.n, s.sb, s.ob = keep, s.sb - sb, s.ob - ob
      fields[#fields + 1] = 'pb'
      fields[#fields + 1] = pb
    end
    for _, x in ipairs({'n', s.n, 'sb', s.sb, 'ob', s.ob}) do fields[#fields + 1] = x end
    if wid ~= '' then fields[#fields + 1] = 'w:' .. wid; fields[#fields + 1] = v end
    if exp ~= '' then fields[#fields + 1] = 'exp'; fields[#fields + 1] = exp end
    redis.call('HSET', h, unpack(fields))
    if exp == '' and st.exp ~= '' then redis.call('HDEL', h, 'exp') end
    delta.versions = delta.versions + 1
    delta.stored = delta.stored + size
    delta.original = delta.original + orig
    reindex(sid, s, st)
    -- Native expiry lets Redis reclaim the space itself. Reads compare expires_at with the
    -- store clock; the server expires no earlier than that and never before the TTL has run
    -- on its own clock, so a store clock behind the server's cannot lose live data.
    if exp ~= '' then
      local t = redis.call('TIME')
      local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      local at = math.max(math.ceil(tonumber(exp) * 1000),
                          ms + math.ceil((tonumber(exp) - NOW) * 1000))
      redis.call('PEXPIREAT', h, at)
      redis.call('PEXPIREAT', z, at)
    elseif st.exp ~= '' then
      redis.call('PERSIST', h)
      redis.call('PERSIST', z)
    end
    st.live, st.indexed, st.cur, st.F, st.exp = true, true, v, ARGV[a + 7], exp
    st.n, st.sb, st.ob, st.tags = s.n, s.sb, s.ob, p.tags
    out[i] = {v, exp, false, p.tags}
  end
end
flush()
return out
