-- qhost: the Lua library's entry point (API.md). Everything a pipeline
-- script needs hangs off this table.
local app = require("qhost.app")
local codec = require("qhost.codec")
local host = require("qhost.host")
local topic = require("qhost.topic")

-- qhost.sleep(seconds) -> true, or false when a stop (Ctrl-C, SIGTERM, the
-- supervisor stopping a source) cut it short: for sources and pipeline
-- functions that poll something.
local function sleep(seconds)
  if type(seconds) ~= "number" then
    require("qhost.runtime.argcheck").fail("qhost.sleep expects a number of seconds, got %s", type(seconds))
  end
  return host.sleep_unless_stopped(seconds)
end

local qhost = {
  sleep = sleep,
  version = host.version,
  Application = app.Application,
  TopicConfig = topic.TopicConfig,
  sources = require("qhost.sources"),
  sinks = require("qhost.sinks"),
  agg = require("qhost.agg").public,
  lookups = require("qhost.lookups"),
  json = {
    encode = codec.json_encode,
    encode_pretty = codec.json_encode_pretty,
    decode = codec.json_decode,
    null = codec.null,
  },
}

return qhost
