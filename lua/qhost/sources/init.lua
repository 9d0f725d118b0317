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

-- The built-in sources are loaded when first named: an app that uses
-- neither (and every source process) starts without parsing them.
local sources = setmetatable({ Source = source.Source,
  StatefulSource = require("qhost.sources.stateful").StatefulSource }, {
  __index = function(self, class)
    local file = BUILTIN[class]
    if not file then return nil end
    local cls = require("qhost.sources." .. file)
    rawset(self, class, cls)
    return cls
  end,
})

return sources
