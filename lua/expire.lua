-- expire.lua: end a coupon whose time is up. Marks it expired and rejects
-- everyone still waiting or admitted with EXPIRED, a chunk at a time (call
-- again while it returns a positive count), so a long line never blocks
-- Redis for long.
--
-- KEYS[1] coupon:{id}:meta      hash   status, expired_ms
-- KEYS[2] coupon:{id}:queue     zset   waiting users
-- KEYS[3] coupon:{id}:admitted  zset   users taken from the line
-- KEYS[4] coupon:{id}:results   hash   user -> result
-- KEYS[5] coupon:{id}:outcomes  hash   counts by outcome
-- ARGV[1] now, ms since the epoch
-- ARGV[2] most users to reject in this call
--
-- Reply: the number of users rejected in this call.

if not redis.call('HGET', KEYS[1], 'expired_ms') then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'expired_ms', ARGV[1])
end
local left = tonumber(ARGV[2])
local rejected = 0
for _, key in ipairs({KEYS[3], KEYS[2]}) do
  if left > 0 then
    local popped = redis.call('ZPOPMIN', key, left)
    for i = 1, #popped, 2 do
      local user = popped[i]
      if not redis.call('HGET', KEYS[4], user) then
        redis.call('HSET', KEYS[4], user, 'R:EXPIRED')
        rejected = rejected + 1
      end
    end
    left = left - #popped / 2
  end
end
if rejected > 0 then
  redis.call('HINCRBY', KEYS[5], 'expired', rejected)
end
return rejected
