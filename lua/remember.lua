-- remember.lua: Redis takes back an issue that MySQL holds and it forgot.
--
-- Rows reach coupon_issue only from the claim script's outbox (or from the
-- issued set, by reconciliation), so a row whose user is not in the issued
-- set means Redis lost that issue after its event left: a Redis restart
-- from an append-only file a second behind, or a loss while the event was
-- in Kafka. Until Redis knows it, the stock counts that coupon as still to
-- hand out and the user could be issued it again. Adding the user to the
-- issued set is the gate: when the user is there already (the usual case:
-- the row arrived after reconciliation read the set), nothing changes, so
-- the script may be called for every row that looks extra.
--
-- KEYS[1] coupon:{id}:meta     hash   sold_out, sold_out_ms
-- KEYS[2] coupon:{id}:stock    string coupons left
-- KEYS[3] coupon:{id}:issued   set    users who hold this coupon
-- KEYS[4] coupon:{id}:results  hash   user -> "I:<issued_at_ms>" | "R:<REASON>"
-- KEYS[5] daily:{u<user>}:<day> the user's issues on the day of the issue
-- ARGV[1] user id
-- ARGV[2] issued_at, ms since the epoch (from the row)
-- ARGV[3] "1" to count the issue in KEYS[5] (its day is today), else "0"
-- ARGV[4] seconds the daily counter lives
-- ARGV[5] now, ms since the epoch
--
-- Reply: 1 if Redis took the issue back, 0 if it knew it (or the coupon is
-- gone from Redis, which warm-up rebuilds from MySQL whole).

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then
  return 0
end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock > 0 then
  stock = stock - 1
  redis.call('SET', KEYS[2], stock)
end
if stock <= 0 and not redis.call('HGET', KEYS[1], 'sold_out') then
  redis.call('HSET', KEYS[1], 'sold_out', '1', 'sold_out_ms', ARGV[5])
end
-- The user holds the coupon, whatever Redis answered them since.
local result = redis.call('HGET', KEYS[4], ARGV[1])
if not result or string.sub(result, 1, 2) ~= 'I:' then
  redis.call('HSET', KEYS[4], ARGV[1], 'I:' .. ARGV[2])
end
if ARGV[3] == '1' then
  redis.call('INCR', KEYS[5])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
end
return 1
