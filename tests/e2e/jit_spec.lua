-- The per-message loop runs compiled: LuaJIT records traces rooted in
-- process_batch's process_range (the consume -> pipeline -> offsets loop).
local H = require("helper")

describe("JIT #" .. H.mode, function()
  it("traces the pipeline's per-message loop", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
local qhost = require("qhost")
local jutil = require("jit.util")
local roots = {}
jit.attach(function(what, tr, func, pc)
  if what == "stop" then
    local info = jutil.funcinfo(func, pc)
    if info.source and info.source:find("qhost/runtime/process_batch.lua", 1, true) then
      roots[#roots + 1] = info.linedefined
    end
  end
end, "trace")
local app = qhost.Application{ consumer_group = "]] .. H.unique("g") .. [[", auto_offset_reset = "earliest" }
local Counter = qhost.sources.Source:extend("Counter")
function Counter:run()
  for i = 1, 20000 do self:produce{ key = "k", value = '{"n":' .. i .. '}' } end
end
local sdf = app:dataframe{ source = Counter{ name = "]] .. H.unique("jit") .. [[" } }
sdf = sdf:filter(function(v) return v.n % 2 == 0 end):apply(function(v) v.m = v.n * 2; return v end)
local out = app:run{ count = 10000 }
jit.attach(function() end)
print(#out)
-- The line where process_range is defined, from the loaded chunk.
local src = assert(io.open(package.searchpath("qhost.runtime.process_batch", package.path))):read("*a")
local line = 0
for l in src:gmatch("([^\n]*)\n") do
  line = line + 1
  if l:find("local function process_range", 1, true) then break end
end
local traced = 0
for _, at in ipairs(roots) do if at == line then traced = traced + 1 end end
print("traces in process_range", traced)
]])
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("^10000\n"), r.stdout)
    local traced = tonumber(r.stdout:match("traces in process_range%s+(%d+)"))
    assert.is_true(traced >= 1, r.stdout)
  end)
end)
