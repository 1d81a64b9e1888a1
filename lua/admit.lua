-- admit.lua: take the head of a coupon's waiting line at the coupon's
-- admission rate, for the claim script.
--
-- The rate is a token bucket kept in the coupon's meta hash, so it holds for
-- the coupon as a whole however many workers call this. Admitted users move,
-- in arrival order, from the line to the admitted set; the claim script
-- takes them from there. Users left in the admitted set by a worker that
-- died are returned again, ahead of the new ones, so nobody is stranded.
-- Once the coupon is sold out the rate no longer applies: the line is
-- drained in large batches so everyone learns the outcome at once.
--
-- KEYS[1] coupon:{id}:meta      hash   rate, sold_out, admit_tokens, admit_ts_ms,
--                                      observed_rate, status, valid_to_ms
-- KEYS[2] coupon:{id}:queue     zset   waiting users
-- KEYS[3] coupon:{id}:admitted  zset   users taken from the line
-- KEYS[4] coupon:{id}:stock     string coupons left
-- ARGV[1] now, ms since the epoch
-- ARGV[2] most users to admit in one call at the rate
-- ARGV[3] most users to take in one call once sold out
--
-- Reply: the users to run the claim script for (stale admitted first, then
-- the new ones, all in arrival order), as a flat list of ids.

local now = tonumber(ARGV[1])
local max_batch = tonumber(ARGV[2])
local drain_batch = tonumber(ARGV[3])

local meta = redis.call('HMGET', KEYS[1], 'rate', 'sold_out', 'admit_tokens', 'admit_ts_ms', 'observed_rate',
  'status', 'valid_to_ms')
if not meta[1] then
  return {}
end
-- An ended coupon admits nobody: the expiry job answers the line.
if meta[6] == 'expired' or now >= tonumber(meta[7] or '0') then
  return {}
end
local rate = tonumber(meta[1])
local sold_out = meta[2] or tonumber(redis.call('GET', KEYS[4]) or '0') <= 0

local take
if sold_out then
  take = drain_batch
else
  -- Refill: `rate` tokens a second, at most one second's worth banked.
  local tokens = tonumber(meta[3] or rate)
  local last = tonumber(meta[4] or now)
  local elapsed = math.max(0, now - last)
  tokens = math.min(rate, tokens + elapsed * rate / 1000)
  take = math.min(math.floor(tokens), max_batch)
  local waiting = redis.call('ZCARD', KEYS[2])
  take = math.min(take, waiting)
  tokens = tokens - take
  -- Observed admissions per second, smoothed: what the ETA is based on.
  if elapsed > 0 and waiting > 0 then
    local observed = tonumber(meta[5] or rate)
    local sample = take * 1000 / elapsed
    local weight = math.min(1, elapsed / 2000)
    observed = observed + (sample - observed) * weight
    redis.call('HSET', KEYS[1], 'observed_rate', tostring(observed))
  end
  redis.call('HSET', KEYS[1], 'admit_tokens', tostring(tokens), 'admit_ts_ms', now)
end

if take > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], take)
  local args = {}
  for i = 1, #popped, 2 do
    args[#args + 1] = popped[i + 1]
    args[#args + 1] = popped[i]
  end
  if #args > 0 then
    redis.call('ZADD', KEYS[3], unpack(args))
  end
end

return redis.call('ZRANGE', KEYS[3], 0, math.max(max_batch, drain_batch) - 1)
