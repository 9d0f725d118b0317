-- qhost.sources: the Source base class and the built-in sources, each a
-- Lua file under the root's sources/ folder, loaded as qhost.sources.<file>.
local host = require("qhost.host")
local source = require("qhost.sources.source")

local BUILTIN = { CSVSource = "csv", KafkaReplicatorSource = "kafka_replicator" }

for _, file in pairs(BUILTIN) do
  local module = "qhost.sources." .. file
  package.preload[module] = package.preload[module] or function()
    local chunk, err = loadfile(host.root .. "/sources/" .. file .. ".lua")
    if not chunk then error(err, 0) end
    return chunk(module)
  end
end

local sources = { Source = source.Source, StatefulSource = require("qhost.sources.stateful").StatefulSource }
for class, file in pairs(BUILTIN) do
  sources[class] = require("qhost.sources." .. file)
end

return sources
