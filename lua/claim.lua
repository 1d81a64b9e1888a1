-- claim.lua: decide the claims of a batch of admitted users, atomically.
--
-- For each user, in order: skip if not in the admitted set (decided
-- already: this makes a repeated call change nothing); already holds the
-- coupon -> ALREADY_ISSUED; today's limit reached -> DAILY_LIMIT; no stock
-- -> SOLD_OUT (and the coupon is marked sold out); otherwise issue: take one
-- from stock, add to the issued set, count the day's use, record the
-- ticket's result and append one outbox entry, which the relay carries to
-- Kafka. Claim and event are written in one step, so there is no moment
-- where Redis says "issued" and nothing on the way to MySQL knows of it.
--
-- KEYS[1] coupon:{id}:meta      hash   sold_out, sold_out_ms
-- KEYS[2] coupon:{id}:stock     string coupons left
-- KEYS[3] coupon:{id}:admitted  zset   users taken from the line
-- KEYS[4] coupon:{id}:results   hash   user -> "I:<issued_at_ms>" | "R:<REASON>"
-- KEYS[5] coupon:{id}:issued    set    users who hold this coupon
-- KEYS[6] coupon:{id}:outbox    stream one entry per issue: user, issued_at_ms, day
-- KEYS[7] coupon:{id}:outcomes  hash   counts by outcome
-- KEYS[7 + i] daily:{user_i}:<day>      the i-th user's issues that day
-- ARGV[1] daily limit
-- ARGV[2] day, YYYYMMDD in DAILY_LIMIT_TZ (from the caller: no race at midnight)
-- ARGV[3] seconds the daily counters live (until a little after the day ends)
-- ARGV[4] now, ms since the epoch
-- ARGV[4 + i] the i-th user id
--
-- Reply: {stock left after the call, {user, outcome, ...}}: the flat list
-- holds the users decided in this call; outcome is ISSUED, ALREADY_ISSUED,
-- DAILY_LIMIT or SOLD_OUT. The stock tells the caller the coupon sold out
-- even when the call's last user took the last coupon (no SOLD_OUT in it).

local limit = tonumber(ARGV[1])
local day = ARGV[2]
local ttl = tonumber(ARGV[3])
local now = ARGV[4]
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local reply = {}
local counts = {}

local function decide(user, outcome, result)
  redis.call('HSET', KEYS[4], user, result)
  counts[outcome] = (counts[outcome] or 0) + 1
  reply[#reply + 1] = user
  reply[#reply + 1] = outcome
end

for i = 5, #ARGV do
  local user = ARGV[i]
  local daily = KEYS[3 + i]
  if redis.call('ZREM', KEYS[3], user) == 1 then
    if redis.call('SISMEMBER', KEYS[5], user) == 1 then
      decide(user, 'ALREADY_ISSUED', 'R:ALREADY_ISSUED')
    elseif tonumber(redis.call('GET', daily) or '0') >= limit then
      decide(user, 'DAILY_LIMIT', 'R:DAILY_LIMIT')
    elseif stock <= 0 then
      decide(user, 'SOLD_OUT', 'R:SOLD_OUT')
    else
      stock = stock - 1
      redis.call('SADD', KEYS[5], user)
      redis.call('INCR', daily)
      redis.call('EXPIRE', daily, ttl)
      redis.call('XADD', KEYS[6], '*', 'user', user, 'issued_at_ms', now, 'day', day)
      decide(user, 'ISSUED', 'I:' .. now)
    end
  end
end

redis.call('SET', KEYS[2], stock)
if stock <= 0 and not redis.call('HGET', KEYS[1], 'sold_out') then
  redis.call('HSET', KEYS[1], 'sold_out', '1', 'sold_out_ms', now)
end
for outcome, n in pairs(counts) do
  redis.call('HINCRBY', KEYS[7], string.lower(outcome), n)
end
return {stock, reply}
