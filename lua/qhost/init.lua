-- qhost: the Lua library's entry point (API.md). Everything a pipeline
-- script needs hangs off this table.
local app = require("qhost.app")
local codec = require("qhost.codec")
local host = require("qhost.host")
local topic = require("qhost.topic")

local qhost = {
  version = host.version,
  Application = app.Application,
  TopicConfig = topic.TopicConfig,
  sources = require("qhost.sources"),
  sinks = require("qhost.sinks"),
  json = {
    encode = codec.json_encode,
    encode_pretty = codec.json_encode_pretty,
    decode = codec.json_decode,
    null = codec.null,
  },
}

return qhost
