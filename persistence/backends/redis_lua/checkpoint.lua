-- ARGV[3] 'put': store checkpoint ARGV[4] of state ARGV[5] (KEYS[1] is its c key) with packed
-- created, checksum, metadata ARGV[6] and frame ARGV[7]. 'get': {state id, frame, packed} or
-- {}. 'del': 1 if it existed. Insertion order breaks ties of created_at (a '#' counter).
local op, cid = ARGV[3], ARGV[4]
if op == 'put' then
  local seq = redis.call('HINCRBY', KEYS[1], '#', 1)
  redis.call('HSET', KEYS[1], cid, ARGV[7], 'm' .. cid, ARGV[6] .. SEP .. seq)
  redis.call('HSET', G .. 'cp', cid, ARGV[5])
  delta.checkpoints = 1
  flush()
  return 1
end
local sid = redis.call('HGET', G .. 'cp', cid)
if not sid then return op == 'get' and {} or 0 end
local c = skey('c', sid)
if op == 'get' then
  local r = redis.call('HMGET', c, cid, 'm' .. cid)
  return {sid, r[1], r[2]}
end
redis.call('HDEL', c, cid, 'm' .. cid)
redis.call('HDEL', G .. 'cp', cid)
if redis.call('HLEN', c) <= 1 then redis.call('DEL', c) end
delta.checkpoints = -1
flush()
return 1
