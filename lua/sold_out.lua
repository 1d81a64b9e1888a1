-- sold_out.lua: the users a sold-out coupon has a ticket result for or
-- counts as holders, once nobody is left in its line, so a gateway can turn
-- everyone else away without asking Redis (gateway/src/claim/sold_out.rs).
--
-- From then on the set cannot grow: enqueue.lua adds nobody to a sold-out
-- coupon's line, so admit.lua and claim.lua decide nobody new, and
-- expire.lua rejects only users in the line. For anyone not in the set,
-- enqueue.lua answers SOLD_OUT; only the expiry job's clean-up, after
-- valid_to or the grace period, changes the coupon's keys again.
--
-- KEYS[1] coupon:{id}:meta      hash   sold_out, valid_to_ms
-- KEYS[2] coupon:{id}:queue     zset   waiting users
-- KEYS[3] coupon:{id}:admitted  zset   users taken from the line
-- KEYS[4] coupon:{id}:results   hash   user -> result
-- KEYS[5] coupon:{id}:issued    set    users who hold this coupon
-- ARGV[1] most users to return (more: the reply is empty, not worth keeping)
--
-- Reply: {valid_to_ms, user, user, ...} (a holder with a result is named
-- twice) when the coupon is sold out with nobody waiting or admitted and
-- at most ARGV[1] results and holders; else {}.

local meta = redis.call('HMGET', KEYS[1], 'sold_out', 'valid_to_ms')
if not meta[1] or not meta[2] then
  return {}
end
if redis.call('ZCARD', KEYS[2]) > 0 or redis.call('ZCARD', KEYS[3]) > 0 then
  return {}
end
if redis.call('HLEN', KEYS[4]) + redis.call('SCARD', KEYS[5]) > tonumber(ARGV[1]) then
  return {}
end
local reply = redis.call('HKEYS', KEYS[4])
for _, user in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  reply[#reply + 1] = user
end
table.insert(reply, 1, meta[2])
return reply
