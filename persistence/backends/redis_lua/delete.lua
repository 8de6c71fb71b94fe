-- Delete one version (ARGV[3] ~= '') or the whole state with its checkpoints (ARGV[3] == '').
-- KEYS: h, z, c. ARGV[4] is the state id. Returns 1 if there was something to delete.
local h, z, c, sid, v = KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[3]
if v == '' then
  local f = redis.call('HMGET', h, 'cur', 'exp')
  local existed = f[1] and live(f[2])  -- an expired state is wiped too, but did not exist
  wipe(sid, h, z)
  for _, cid in ipairs(redis.call('HKEYS', c)) do
    if string.len(cid) == 32 then
      redis.call('HDEL', G .. 'cp', cid)
      delta.checkpoints = delta.checkpoints - 1
    end
  end
  redis.call('DEL', c)
  flush()
  return existed and 1 or 0
end
local old = state_of(redis.call('HMGET', h, unpack(STATE)), true)
if not old.cur or not live(old.exp) then return 0 end
local m = redis.call('HGET', h, 'm' .. v)
if not m then return 0 end
if old.n == 1 then
  wipe(sid, h, z)
else
  local size, orig, _, _, wid = meta_fields(m)
  redis.call('HDEL', h, 'f' .. v, 'm' .. v, 't' .. v, 'w:' .. wid)
  redis.call('ZREM', z, v)
  delta.versions = delta.versions - 1
  delta.stored = delta.stored - size
  delta.original = delta.original - orig
  local s = state_of({old.cur, old.exp, old.n - 1, old.sb - size, old.ob - orig, old.tags,
                      old.meta})
  local fields = {'n', s.n, 'sb', s.sb, 'ob', s.ob}
  if v == old.cur then  -- the previous version becomes the latest: its frame moves to F
    s.cur = redis.call('ZRANGE', z, -1, -1)[1]
    local r = redis.call('HMGET', h, 'f' .. s.cur, 'm' .. s.cur, 't' .. s.cur)
    s.meta, s.tags = r[2], r[3]
    for _, x in ipairs({'cur', s.cur, 'F', r[1], 'M', r[2], 'T', r[3]}) do
      fields[#fields + 1] = x
    end
    redis.call('HDEL', h, 'f' .. s.cur)
  end
  redis.call('HSET', h, unpack(fields))
  reindex(sid, s, old)
end
flush()
return 1
