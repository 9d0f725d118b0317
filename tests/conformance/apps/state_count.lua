-- The stateful conformance pipeline, in qhost (state_count.py line by line):
-- per message key a running count and sum, produced to the output topic
-- with the same key.
--   qhost run state_count.lua BROKER INPUT OUTPUT GROUP STATE_DIR COUNT
local qhost = require("qhost")
local broker, input_name, output_name, group, state_dir, count = unpack(arg)

local app = qhost.Application{
  broker_address = broker, consumer_group = group, auto_offset_reset = "earliest",
  state_dir = state_dir, loglevel = "WARNING",
}
local source = app:topic(input_name, { key_deserializer = "str", value_deserializer = "json" })
local output = app:topic(output_name, { key_serializer = "str", value_serializer = "json" })

local function count_and_sum(value, state)
  local n = state:get("count", 0) + 1
  local total = state:get("sum", 0) + value.v
  state:set("count", n)
  state:set("sum", total)
  return { k = value.k, count = n, sum = total }
end

local sdf = app:dataframe(source)
sdf = sdf:apply(count_and_sum, { stateful = true })
sdf:to_topic(output)
app:run{ count = tonumber(count), timeout = 30 }
