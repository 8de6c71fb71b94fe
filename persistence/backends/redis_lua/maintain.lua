-- ARGV[3] == 'purge': remove up to ARGV[4] states that expired on the store clock, or whose
-- keys Redis already expired, with their index entries. ARGV[3] == 'prune': drop versions
-- past the newest ARGV[5] from up to ARGV[4] states. Returns how many states / versions.
local limit = tonumber(ARGV[4])
local done = 0
if ARGV[3] == 'purge' then
  local t = redis.call('TIME')
  -- Redis itself may have expired states the store clock still thinks live.
  local until_ = ARGV[2]
  if tonumber(t[1]) > NOW then until_ = t[1] end
  local ids = redis.call('ZRANGEBYSCORE', G .. 'exp', '-inf', until_, 'LIMIT', 0, limit)
  for _, sid in ipairs(ids) do
    local h = skey('h', sid)
    local exp = redis.call('ZSCORE', G .. 'exp', sid)
    if not live(exp) or redis.call('EXISTS', h) == 0 then
      wipe(sid, h, skey('z', sid))
      done = done + 1
    end
  end
else
  local keep = tonumber(ARGV[5])
  local ids = redis.call('ZRANGEBYSCORE', G .. 'nv', '(' .. keep, '+inf', 'LIMIT', 0, limit)
  for _, sid in ipairs(ids) do
    local h, z = skey('h', sid), skey('z', sid)
    if redis.call('EXISTS', h) == 0 then
      wipe(sid, h, z)  -- Redis expired it: only its index entries were left
    else
      local dropped, sb, ob, pb = drop_oldest(h, z, keep)
      if pb then redis.call('HSET', h, 'pb', pb) end
      reindex_latest(sid, h, z, -sb, -ob)
      done = done + dropped
    end
  end
end
flush()
return done
