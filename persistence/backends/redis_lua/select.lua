-- Live states in order, for list_states ('ids'), page_states ('page') and search ('search').
-- ARGV after the common two: mode, order, lex range lo, hi (id orders, cursor and prefix
-- applied by the caller), cursor key and id ('' = none; updated orders), prefix, match,
-- limit, then the tags. Replies flat: ids; id, summary pairs; or id, version, expires_at,
-- metadata, tags quintuples.
local mode, order, lo, hi = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local after_key, after_id, prefix, match = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local limit = tonumber(ARGV[11])
local tags = {}
for i = 12, #ARGV do tags[#tags + 1] = G .. 't:' .. ARGV[i] end
local by_time = order == 'updated' or order == '-updated'
local desc = string.sub(order, 1, 1) == '-'
local Z = by_time and G .. 'upd' or G .. 'ids'
local tagcheck = #tags > 0

-- What walking one entry of the order index (a few calls from Lua: summary, tag checks)
-- costs next to merging one entry of a tag index (a step of ZINTERSTORE in C, which then
-- also sorts): measured on a million states, a walk step is about 1.5 merge steps.
local WALK_COST = 1.5

if #tags > 0 then
  local total = math.max(redis.call('ZCARD', Z), 1)
  local small, smallest, sum, hits = math.huge, nil, 0, total
  for _, key in ipairs(tags) do
    local card = redis.call('ZCARD', key)
    if card < small then small, smallest = card, key end
    sum, hits = sum + card, hits * card / total  -- "all": as if tags were independent
  end
  if match == 'any' then hits = math.min(sum, total) end
  if sum == 0 or (match == 'all' and small == 0) then return {} end
  if match == 'all' and not by_time then
    Z = smallest  -- tag indexes are lex-ordered too: walk the smallest, test the others
  elseif (match == 'all' and small * #tags or sum * 2)
      <= WALK_COST * limit * total / math.max(hits, 1) then
    -- Merging the tag indexes into the order index (cost ~ their size) is cheaper than
    -- walking the order index and testing membership (cost ~ limit / selectivity).
    local tmp = G .. 'tmp'
    if match == 'all' then  -- weights 1, 0, 0...: the order index's scores survive
      local args = {tmp, #tags + 1, Z}
      for _, key in ipairs(tags) do args[#args + 1] = key end
      args[#args + 1] = 'WEIGHTS'
      args[#args + 1] = 1
      for _ = 1, #tags do args[#args + 1] = 0 end
      redis.call('ZINTERSTORE', unpack(args))
    else
      redis.call('ZUNIONSTORE', tmp, #tags, unpack(tags))
      redis.call('ZINTERSTORE', tmp, 2, Z, tmp, 'WEIGHTS', 1, 0)
    end
    Z, tagcheck = tmp, false
  end
end

-- An id prefix in a time order: the same choice. A narrow prefix (few ids, which may all be
-- far from the newest) is cut out of the id index and intersected with the order index; a
-- broad one is cheaper to test while walking.
if by_time and prefix ~= '' then
  local m = redis.call('ZLEXCOUNT', G .. 'ids', lo, hi)
  if m == 0 then
    if Z == G .. 'tmp' then redis.call('DEL', Z) end
    return {}
  end
  if m * 2 <= WALK_COST * limit * math.max(redis.call('ZCARD', Z), 1) / m then
    local cut, tmp = G .. 'tmp:prefix', G .. 'tmp'
    redis.call('ZRANGESTORE', cut, G .. 'ids', lo, hi, 'BYLEX')
    redis.call('ZINTERSTORE', tmp, 2, Z, cut, 'WEIGHTS', 1, 0)
    redis.call('DEL', cut)
    Z = tmp
  end
end

local function accept(sid)
  local s = redis.call('HGET', G .. 'sum', sid)
  if not s then return nil end
  local exp = string.match(s, '^[^\031]*\031[^\031]*\031[^\031]*\031[^\031]*\031[^\031]*\031[^\031]*\031([^\031]*)')
  if not live(exp) or (prefix ~= '' and string.sub(sid, 1, #prefix) ~= prefix) then return nil end
  if tagcheck then
    local found = 0
    for _, key in ipairs(tags) do
      if redis.call('ZSCORE', key, sid) then found = found + 1 end
    end
    if found == 0 or (match == 'all' and found < #tags) then return nil end
  end
  if mode == 'ids' then return {sid} end
  if mode == 'page' then return {sid, s} end
  local cur = string.match(s, '^[^\031]*')
  local r = redis.call('HMGET', skey('h', sid), 'm' .. cur, 't' .. cur)
  if not r[1] then return nil end  -- Redis already expired its keys
  return {sid, cur, exp, r[1], r[2]}
end

local out, found = {}, 0
local chunk = math.min(1000, math.max(64, limit * 2))
local function take(batch)
  for _, sid in ipairs(batch) do
    local row = accept(sid)
    if row then
      for _, x in ipairs(row) do out[#out + 1] = x end
      found = found + 1
      if found >= limit then return true end
    end
  end
  return #batch < chunk
end

if not by_time then
  while true do
    local batch
    if desc then batch = redis.call('ZREVRANGEBYLEX', Z, hi, lo, 'LIMIT', 0, chunk)
    else batch = redis.call('ZRANGEBYLEX', Z, lo, hi, 'LIMIT', 0, chunk) end
    if take(batch) then break end
    if desc then hi = '(' .. batch[#batch] else lo = '(' .. batch[#batch] end
  end
else
  -- Position after the (updated_at, id) cursor; ties are ordered by id like the index.
  local start = 0
  if after_id ~= '' then
    local score = redis.call('ZSCORE', Z, after_id)
    if score and tonumber(score) == tonumber(after_key) then
      start = (desc and redis.call('ZREVRANK', Z, after_id) or redis.call('ZRANK', Z, after_id)) + 1
    else
      local ties = redis.call('ZRANGEBYSCORE', Z, after_key, after_key)
      if desc then start = redis.call('ZCOUNT', Z, '(' .. after_key, '+inf')
      else start = redis.call('ZCOUNT', Z, '-inf', '(' .. after_key) end
      for _, m in ipairs(ties) do
        if (desc and not before(m, after_id)) or (not desc and not before(after_id, m)) then
          start = start + 1
        end
      end
    end
  end
  while true do
    local cmd = desc and 'ZREVRANGE' or 'ZRANGE'
    local batch = redis.call(cmd, Z, start, start + chunk - 1)
    if take(batch) then break end
    start = start + chunk
  end
end
if Z == G .. 'tmp' then redis.call('DEL', Z) end
return out
