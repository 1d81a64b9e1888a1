-- enqueue.lua: users ask for one coupon. One atomic call answers, for each
-- of them in turn, the fast rejections and, if none applies, puts the user
-- in the waiting line. The gateway gathers the claims that arrive while its
-- previous call is in flight into one call, so a storm costs Redis one
-- script run per batch, not per claim.
--
-- KEYS[1] coupon:{id}:meta      hash   valid_from_ms, valid_to_ms, status, sold_out
-- KEYS[2] coupon:{id}:stock     string coupons left
-- KEYS[3] coupon:{id}:queue     zset   waiting users, score = arrival number
-- KEYS[4] coupon:{id}:admitted  zset   users taken from the line, claim in flight
-- KEYS[5] coupon:{id}:results   hash   user -> "I:<issued_at_ms>" | "R:<REASON>"
-- KEYS[6] coupon:{id}:issued    set    users who hold this coupon
-- KEYS[7] coupon:{id}:seq       string arrival counter
-- KEYS[7+i] daily:{user}:<day>  string claimant i's issues today (other slot:
--                                       see coupon_core::scripts, cluster note)
-- ARGV[1]     daily limit
-- ARGV[2*i]   claimant i's user id
-- ARGV[2*i+1] claimant i's now, ms since the epoch
--
-- Claimants are answered in order: a user named twice is queued by the
-- first and finds themself WAITING, same place, by the second.
--
-- Reply: one { kind, detail, rate } per claimant, where rate is the
-- admissions per second actually observed (or the configured rate before
-- any were), for the ETA
--   {"NO_COUPON", ""}           the coupon is not in Redis (unknown, or not warmed)
--   {"NOT_ACTIVE", "scheduled"|"expired"}
--   {"FINAL", result}           the user's ticket is final already (result as stored)
--   {"ALREADY_ISSUED", ""}      holds the coupon, without a ticket result
--   {"ADMITTED", ""}            taken from the line, claim in flight
--   {"WAITING", rank}           in line already (0-based rank; same place as before)
--   {"QUEUED", rank}            just joined the line
--   {"SOLD_OUT", ""}
--   {"DAILY_LIMIT", ""}

local limit = tonumber(ARGV[1])
-- One reply table shared by every sold-out claimant of the call.
local SOLD_OUT = {'SOLD_OUT', ''}
local claimants = #KEYS - 7

-- The enqueue itself never changes the coupon's meta or stock: read once.
local meta = redis.call('HMGET', KEYS[1], 'valid_from_ms', 'valid_to_ms', 'status', 'sold_out',
  'rate', 'observed_rate')
local rate = meta[6] or meta[5] or '0'
local replies = {}
if not meta[1] then
  for i = 1, claimants do
    replies[i] = {'NO_COUPON', ''}
  end
  return replies
end
local valid_from = tonumber(meta[1])
local valid_to = tonumber(meta[2])
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
-- Whether anyone is in line or admitted, asked once per call and only once
-- the coupon is sold out: the line is then drained within a tick, so most
-- sold-out claimants need no per-user lookup in it.
local line_empty = nil

local function enqueue(user, now, daily)
  local result = redis.call('HGET', KEYS[5], user)
  if result and string.sub(result, 1, 1) == 'I' then
    return {'FINAL', result}
  end
  -- Sold out: the storm's common case after the first seconds, answered in
  -- few steps. Someone still in line (the admitter drains it within a tick)
  -- already reads SOLD_OUT on their ticket: a repeated claim returns that.
  if meta[4] then
    if result then return {'FINAL', result} end
    -- A holder without a ticket result (warmed from MySQL after Redis
    -- lost the coupon) is told so, not that it is gone.
    if redis.call('SISMEMBER', KEYS[6], user) == 1 then
      return {'ALREADY_ISSUED', ''}
    end
    if line_empty == nil then
      line_empty = redis.call('ZCARD', KEYS[3]) == 0 and redis.call('ZCARD', KEYS[4]) == 0
    end
    if not line_empty
        and (redis.call('ZSCORE', KEYS[3], user) or redis.call('ZSCORE', KEYS[4], user)) then
      return {'FINAL', 'R:SOLD_OUT'}
    end
    return SOLD_OUT
  end
  if redis.call('SISMEMBER', KEYS[6], user) == 1 then
    return {'ALREADY_ISSUED', ''}
  end
  local rank = redis.call('ZRANK', KEYS[3], user)
  if rank then
    return {'WAITING', rank, rate}
  end
  if redis.call('ZSCORE', KEYS[4], user) then
    return {'ADMITTED', ''}
  end

  if meta[3] == 'expired' or now >= valid_to then
    if result then return {'FINAL', result} end
    return {'NOT_ACTIVE', 'expired'}
  end
  if now < valid_from then
    return {'NOT_ACTIVE', 'scheduled'}
  end

  if stock <= 0 then
    if result then return {'FINAL', result} end
    return SOLD_OUT
  end

  local used = tonumber(redis.call('GET', daily) or '0')
  if used >= limit then
    if result then return {'FINAL', result} end
    return {'DAILY_LIMIT', ''}
  end

  -- A ticket rejected for the daily limit on an earlier day may try again.
  if result then
    redis.call('HDEL', KEYS[5], user)
  end
  local seq = redis.call('INCR', KEYS[7])
  redis.call('ZADD', KEYS[3], 'NX', seq, user)
  return {'QUEUED', redis.call('ZRANK', KEYS[3], user), rate}
end

for i = 1, claimants do
  replies[i] = enqueue(ARGV[2 * i], tonumber(ARGV[2 * i + 1]), KEYS[7 + i])
end
return replies
