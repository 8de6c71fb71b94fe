-- Every kept version of one state, oldest first, without frames. KEYS: h, z.
-- Reply: {expires_at, v1, meta1, tags1, v2, ...}, or {} when missing or expired.
local f = redis.call('HMGET', KEYS[1], 'cur', 'exp')
if not f[1] or not live(f[2]) then return {} end
local out = {f[2] or ''}
for _, v in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local r = redis.call('HMGET', KEYS[1], 'm' .. v, 't' .. v)
  out[#out + 1] = v
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
end
return out
