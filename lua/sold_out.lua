-- sold_out.lua: whether a gateway may answer a coupon's claims itself
-- (gateway/src/claim/sold_out.rs): the coupon is sold out and nobody is
-- left in its line or admitted.
--
-- From then on the users with a ticket result or holding the coupon do not
-- change in the normal course: enqueue.lua adds nobody to a sold-out
-- coupon's line, so admit.lua and claim.lua decide nobody new, and
-- expire.lua rejects only users in the line. For anyone else, enqueue.lua
-- answers SOLD_OUT. Only the expiry job's clean-up, after valid_to or the
-- grace period, changes the coupon's keys again (all at once), and
-- reconciliation may give Redis back an issue it lost (remember.lua adds a
-- result and a holder: both sizes grow). So the caller may read those
-- users in pages (HSCAN, SSCAN) after this says yes, without blocking
-- Redis for a large coupon, and check the coupon is unchanged after, and
-- from time to time while it keeps them.
--
-- KEYS[1] coupon:{id}:meta      hash   sold_out, valid_to_ms
-- KEYS[2] coupon:{id}:queue     zset   waiting users
-- KEYS[3] coupon:{id}:admitted  zset   users taken from the line
-- KEYS[4] coupon:{id}:results   hash   user -> result
-- KEYS[5] coupon:{id}:issued    set    users who hold this coupon
-- ARGV[1] most users with a result plus holders worth keeping
--
-- Reply: { valid_to_ms, results, holders } (the sizes of KEYS[4] and
-- KEYS[5]) when the coupon is sold out with nobody waiting or admitted and
-- at most ARGV[1] results plus holders; else nil. The caller asks again
-- after reading the pages: the same answer means nothing was cleaned up
-- or added meanwhile.

local meta = redis.call('HMGET', KEYS[1], 'sold_out', 'valid_to_ms')
if not meta[1] or not meta[2] then
  return nil
end
if redis.call('ZCARD', KEYS[2]) > 0 or redis.call('ZCARD', KEYS[3]) > 0 then
  return nil
end
local results = redis.call('HLEN', KEYS[4])
local holders = redis.call('SCARD', KEYS[5])
if results + holders > tonumber(ARGV[1]) then
  return nil
end
return { tonumber(meta[2]), results, holders }
