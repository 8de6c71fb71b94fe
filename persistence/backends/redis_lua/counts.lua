-- states, versions, checkpoints, stored and original bytes. The counters are kept by every
-- write; states that expired but were not purged yet are subtracted here (up to 10,000 of
-- them, beyond which the figures stay high until purge_expired catches up).
local expired = redis.call('ZRANGEBYSCORE', G .. 'exp', '-inf', ARGV[2], 'LIMIT', 0, 10000)
local c = redis.call('HMGET', G .. 'stats', 'versions', 'stored', 'original', 'checkpoints')
local versions, stored, original = tonumber(c[1] or 0), tonumber(c[2] or 0), tonumber(c[3] or 0)
for _, sid in ipairs(expired) do
  local s = redis.call('HGET', G .. 'sum', sid)
  if s then
    local p = parse_sum(s)
    versions, stored, original = versions - p[2], stored - p[8], original - p[9]
  end
end
local states = redis.call('ZCARD', G .. 'ids') - redis.call('ZCOUNT', G .. 'exp', '-inf', ARGV[2])
return {states, versions, tonumber(c[4] or 0), stored, original}
