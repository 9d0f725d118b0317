-- The pipeline the fault scenarios run: per message key a count in state,
-- and each input copied to the output with its count, {"k", "v", "n"}.
-- Every 100 messages it prints "PROGRESS <partition>:<next offset> ..." on
-- stderr, for each partition it processed, for the harness to kill it at.
--   qhost run counter.lua input=I output=O group=G state_dir=D
--     [guarantee=at-least-once|exactly-once] [idle=600] [pace=0]
--     [commit_interval=1] [changelog=true] [session_ms=6000] [extra=k=v,k=v]
--     [pad=0] [copy=false] [max_bytes=N]
-- idle: stop after that many seconds without a message; pace: sleep that
-- many ms every 100 messages (to be killed mid-way, not at the end); pad:
-- also keep that many bytes per message in the state (a state that grows);
-- copy: the output is the input value itself (all its fields, and its
-- headers) with "n" added; max_bytes: outputs up to that size (the
-- producer's message.max.bytes and the output topic's max.message.bytes).
local qhost = require("qhost")
local a = {}
for _, kv in ipairs(arg) do local k, v = kv:match("^([^=]+)=(.*)$"); a[k] = v end

local consumer_extra = { ["session.timeout.ms"] = tonumber(a.session_ms or "6000"),
  ["heartbeat.interval.ms"] = math.min(3000, math.floor(tonumber(a.session_ms or "6000") / 10)) }
local producer_extra = { ["transaction.timeout.ms"] = 10000 }
for k, v in (a.extra or ""):gmatch("([^=,]+)=([^,]+)") do producer_extra[k] = v end
producer_extra["message.max.bytes"] = a.max_bytes

local positions = {}
local app = qhost.Application{ consumer_group = a.group, auto_offset_reset = "earliest", state_dir = a.state_dir,
  processing_guarantee = a.guarantee or "at-least-once", commit_interval = tonumber(a.commit_interval or "1"),
  use_changelog_topics = a.changelog ~= "false",
  consumer_extra_config = consumer_extra, producer_extra_config = producer_extra,
  on_message_processed = function(_, partition, offset) positions[partition] = offset + 1 end }

local function progress()
  local list = {}
  for p, at in pairs(positions) do list[#list + 1] = p .. ":" .. at end
  return table.concat(list, " ")
end

local keep = { config = qhost.TopicConfig{ num_partitions = 4, extra_config = { ["retention.ms"] = "-1",
  ["max.message.bytes"] = a.max_bytes } } }
local sdf = app:dataframe(app:topic(a.input, keep))
local pace, done, copy = tonumber(a.pace or "0") / 1000, 0, a.copy == "true"
local pad = tonumber(a.pad or "0") > 0 and string.rep("x", tonumber(a.pad)) or nil
sdf = sdf:apply(function(v, state)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  if pad then state:set("pad" .. v.v, pad) end
  done = done + 1
  if done % 100 == 0 and pace > 0 then qhost.sleep(pace) end
  if done % 100 == 0 then io.stderr:write("PROGRESS ", progress(), "\n") end
  if copy then v.n = n; return v end
  return { k = v.k, v = v.v, n = n }
end, { stateful = true })
sdf:to_topic(app:topic(a.output, keep))
app:run{ timeout = tonumber(a.idle or "600") }
