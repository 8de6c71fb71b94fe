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
      local old = state_of(redis.call('HMGET', h, unpack(STATE)), true)
      if old.n > keep then
        local sb, ob, pb = drop(h, z, old.n - keep)
        local s = state_of({old.cur, old.exp, keep, old.sb - sb, old.ob - ob, old.tags, old.meta})
        redis.call('HSET', h, 'pb', pb, 'n', s.n, 'sb', s.sb, 'ob', s.ob)
        reindex(sid, s, old)
        done = done + old.n - keep
      end
    end
  end
end
flush()
return done
