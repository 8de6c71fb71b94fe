-- Read version ARGV[3] ('0': the latest) of each state in KEYS (h keys); a plain HMGET of
-- cur, exp, F, M, T does for the latest alone. Per key: {} when the
-- state is missing or expired, {pb} when the version is missing, else
-- {pb, version, expires_at, frame, packed metadata, tags}.
local out = {}
for i, h in ipairs(KEYS) do
  local f = redis.call('HMGET', h, 'cur', 'exp', 'pb')
  if not f[1] or not live(f[2]) then
    out[i] = {}
  else
    local v = ARGV[3] ~= '0' and ARGV[3] or f[1]
    local r = redis.call('HMGET', h, v == f[1] and 'F' or 'f' .. v, 'm' .. v, 't' .. v)
    if r[2] then
      out[i] = {f[3] or '0', v, f[2] or '', r[1], r[2], r[3]}
    else
      out[i] = {f[3] or '0'}
    end
  end
end
return out
