-- daily_floor.lua: raise one user's daily counter to at least a count.
--
-- After Redis loses its data the daily counters are gone while MySQL still
-- holds the day's issues; warm-up raises each counter to what MySQL counted.
-- Only ever raises: a counter that claims since then made higher (Redis
-- counts an issue before MySQL has its row) is left as it is.
--
-- KEYS[1] daily:{u<user>}:<day>   the user's issues that day
-- ARGV[1] issues MySQL holds for the user that day
-- ARGV[2] seconds the counter lives (until a little after the day ends)
--
-- Reply: 1 if the counter was raised, 0 if it already counted as many.

local floor = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') >= floor then
  return 0
end
redis.call('SET', KEYS[1], floor, 'EX', ARGV[2])
return 1
