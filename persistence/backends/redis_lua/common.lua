-- Prepended to every statehub script (then writes.lua in those that write).
-- ARGV[1] is the namespace, ARGV[2] the store clock.
-- Layout (N = namespace):
--   N:{<16 hex of sha1(id)>}:h:<id>  hash: last, cur, exp, pb; per version n: f<n> frame,
--       m<n> packed metadata, t<n> tags; w:<write_id> -> n. The latest version's frame is in
--       F instead of f<n>, and M, T repeat its m<n>, t<n>: a load is one HMGET, no script.
--   N:{..}:z:<id>   zset of kept versions       N:{..}:c:<id>  checkpoints (never expire)
--   N:{_}:ids (lex) upd (updated_at) exp (expires_at) nv (version count) sum (id -> summary)
--   N:{_}:t:<tag> (ids, lex) tags (tag -> -count) stats (running counters) cp (cid -> id)
-- Packed metadata: size US orig US created US compression US checksum US ttl US wid US json
-- Summary: cur US count US created US size US orig US comp US exp US sb US ob US tags
-- (tags joined by US; sb and ob total the bytes of the kept versions)
-- Strings are compared with byte loops, never with '<': Lua compares strings with strcoll.
local N = ARGV[1]
local G = N .. ':{_}:'
local NOW = tonumber(ARGV[2])
local SEP = '\031'

local function skey(kind, sid)
  return N .. ':{' .. string.sub(redis.sha1hex(sid), 1, 16) .. '}:' .. kind .. ':' .. sid
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

