-- Delete one version (ARGV[3] ~= '') or the whole state with its checkpoints (ARGV[3] == '').
-- KEYS: h, z, c. ARGV[4] is the state id. Returns 1 if there was something to delete.
local h, z, c, sid, v = KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[3]
if v == '' then
  local existed = wipe(sid, h, z)
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
local f = redis.call('HMGET', h, 'cur', 'exp')
if not f[1] or not live(f[2]) then return 0 end
local m = redis.call('HGET', h, 'm' .. v)
if not m then return 0 end
if redis.call('ZCARD', z) == 1 then
  wipe(sid, h, z)
else
  local size, orig, _, _, wid = meta_fields(m)
  redis.call('HDEL', h, 'f' .. v, 'm' .. v, 't' .. v, 'w:' .. wid)
  redis.call('ZREM', z, v)
  if v == f[1] then  -- the previous version becomes the latest: its frame moves to F
    local cur = redis.call('ZRANGE', z, -1, -1)[1]
    local r = redis.call('HMGET', h, 'f' .. cur, 'm' .. cur, 't' .. cur)
    redis.call('HSET', h, 'cur', cur, 'F', r[1], 'M', r[2], 'T', r[3])
    redis.call('HDEL', h, 'f' .. cur)
  end
  delta.versions = delta.versions - 1
  delta.stored = delta.stored - size
  delta.original = delta.original - orig
  reindex_latest(sid, h, z, -size, -orig)
end
flush()
return 1
