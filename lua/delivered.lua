-- delivered.lua: a relay's batch is in Kafka; its entries leave the outbox.
--
-- Acknowledges the entries, then trims the stream up to the first entry
-- not yet delivered: the oldest still pending in the group (read by some
-- relay, not acknowledged), or, with none pending, everything the group
-- has been given. Entries the group never read are newer than all of
-- those, so they stay. Trimming a prefix (XTRIM MINID) costs a fraction of
-- deleting the same entries one by one (XDEL seeks each in its node: about
-- 3 ms of Redis per thousand). An entry delivered by one relay while an
-- older one is pending at another relay stays until that one is delivered
-- too: the stream's length is the undelivered backlog, plus, while another
-- relay's older batch is in flight, what was delivered after it.
--
-- KEYS[1] coupon:{id}:outbox  stream
-- ARGV[1] the consumer group
-- ARGV[2..] the delivered entry ids
--
-- Reply: the stream's length after the trim (the relay's backlog gauge).

local stream, group = KEYS[1], ARGV[1]
if #ARGV > 1 then
  redis.call('XACK', stream, group, unpack(ARGV, 2))
end

local pending = redis.call('XPENDING', stream, group)
if pending[1] > 0 then
  -- Entries before the oldest pending one were all delivered.
  redis.call('XTRIM', stream, 'MINID', pending[2])
else
  local last = nil
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for i = 1, #info, 2 do
      fields[info[i]] = info[i + 1]
    end
    if fields['name'] == group then
      last = fields['last-delivered-id']
    end
  end
  if last and last ~= '0-0' then
    redis.call('XTRIM', stream, 'MINID', last)
    redis.call('XDEL', stream, last)
  end
end
return redis.call('XLEN', stream)
