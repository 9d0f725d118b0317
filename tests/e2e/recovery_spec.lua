-- At-least-once across crashes and members: a SIGKILLed app restarted from
-- its last commit, and three instances of one group with one killed, lose
-- no message. Real Kafka only: the embedded broker lives in one process.
local H = require("helper")

local PRELOAD = [[
local qhost = require("qhost")
local app = qhost.Application{}
local Ids = qhost.sources.Source:extend("Ids")
function Ids:run()
  for i = 1, self.count do self:produce{ key = tostring(i), value = '{"id":' .. i .. '}' } end
end
local topic = app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = tonumber(arg[3]) } })
app:add_source(Ids{ name = arg[1], count = tonumber(arg[2]) }, topic)
app:run()
]]

local WORKER = [[
local qhost = require("qhost")
local host = require("qhost.host")
local app = qhost.Application{ consumer_group = arg[3], auto_offset_reset = "earliest", commit_interval = 0.2,
  consumer_extra_config = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 } }
local input = app:topic(arg[1])
local output = app:topic(arg[2], { config = qhost.TopicConfig{ num_partitions = 1 } })
local sdf = app:dataframe(input)
local done = 0
sdf = sdf:apply(function(v)
  host.sleep(tonumber(arg[4]) or 0)
  done = done + 1
  -- Progress for the spec to wait on (processed, not yet committed).
  if done % 100 == 0 then io.stderr:write("PROGRESS ", done, "\n") end
  return v
end)
sdf:to_topic(output)
app:run{ timeout = tonumber(arg[5]) or 8 }
]]

local COUNT = [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = arg[2], auto_offset_reset = "earliest" }
local seen, distinct, total = {}, 0, 0
app:dataframe(app:topic(arg[1])):update(function(v)
  total = total + 1
  if not seen[v.id] then seen[v.id] = true; distinct = distinct + 1 end
end)
app:run{ timeout = 5 }
print(distinct, total)
]]

local function distinct_in(dir, topic)
  local r = H.run(dir, "count.lua", { args = { topic, H.unique("count") } })
  assert.are.equal(0, r.code, r.stderr)
  local distinct, total = r.stdout:match("(%d+)\t(%d+)")
  return tonumber(distinct), tonumber(total)
end

local function prepare(n, partitions)
  local dir = H.tmpdir()
  H.write(dir .. "/preload.lua", PRELOAD)
  H.write(dir .. "/worker.lua", WORKER)
  H.write(dir .. "/count.lua", COUNT)
  local input, output = H.unique("in"), H.unique("out")
  local r = H.run(dir, "preload.lua", { args = { input, tostring(n), tostring(partitions) } })
  assert.are.equal(0, r.code, r.stderr)
  return dir, input, output
end

describe("recovery #" .. H.mode, function()
  it("a SIGKILLed app restarts from its last commit and loses nothing", function()
    if H.mode ~= "kafka" then pending("needs a broker that outlives the app: real Kafka") return end
    local dir, input, output = prepare(3000, 2)
    local group = H.unique("crash")
    local p = H.start(dir, "worker.lua", { args = { input, output, group, "0.005" } })
    assert.is_true(H.eventually(function() return p:stderr():find("assigned [1-9]") ~= nil end, 60), p:stderr())
    -- Part of the way through its ~15 s of work.
    assert.is_true(H.eventually(function() return p:stderr():find("PROGRESS 500\n", 1, true) ~= nil end, 60),
      p:stderr())
    p:signal("KILL")
    p:wait(30)
    local before = select(1, distinct_in(dir, output))
    assert.is_true(before < 3000, "the app finished before it was killed")
    local r = H.run(dir, "worker.lua", { args = { input, output, group, "0", "6" }, timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    local distinct, total = distinct_in(dir, output)
    assert.are.equal(3000, distinct)
    assert.is_true(total >= 3000)
  end)

  it("three instances share the partitions; when one is killed the others finish its work", function()
    if H.mode ~= "kafka" then pending("scale-out needs a shared broker: real Kafka") return end
    local dir, input, output = prepare(3000, 6)
    local group = H.unique("scale")
    local workers = {}
    for i = 1, 3 do
      local wdir = dir .. "/w" .. i
      os.execute("mkdir -p " .. H.quote(wdir))
      for _, f in ipairs({ "worker.lua" }) do H.write(wdir .. "/" .. f, H.read(dir .. "/" .. f)) end
      workers[i] = H.start(wdir, "worker.lua", { args = { input, output, group, "0.003", "10" } })
    end
    -- Wait until every instance has partitions, then kill one mid-work.
    assert.is_true(H.eventually(function()
      for i = 1, 3 do if not workers[i]:stderr():find("assigned [1-9]") then return false end end
      return true
    end, 90), workers[1]:stderr())
    -- The first to get 100 messages into its work (which one depends on
    -- how the group formed: a member that joined late may find its
    -- partitions done already).
    local victim
    assert.is_true(H.eventually(function()
      for i = 1, 3 do
        if workers[i]:stderr():find("PROGRESS 100\n", 1, true) then victim = i; return true end
      end
      return false
    end, 60), workers[1]:stderr())
    workers[victim]:signal("KILL")
    for i = 1, 3 do workers[i]:wait(180) end
    local distinct = distinct_in(dir, output)
    assert.are.equal(3000, distinct)
    local revoked = false
    for i = 1, 3 do
      if i ~= victim and workers[i]:stderr():find("revoked", 1, true) then revoked = true end
    end
    assert.is_true(revoked, "no other instance saw a rebalance")
  end)

  it("on a rebalance, the revoked partitions are checkpointed first: sink batches written once, offsets committed",
    function()
    if H.mode ~= "kafka" then pending("a consumer group of two processes: real Kafka") return end
    local dir, input = prepare(2000, 2)
    local group = H.unique("revoke")
    -- No periodic checkpoint (commit_interval one hour): only a revoke or the
    -- end commits. A BatchingSink appends each batch to a file.
    H.write(dir .. "/member.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest", commit_interval = 3600,
  consumer_extra_config = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 } }
local Lines = qhost.sinks.BatchingSink:extend("Lines")
function Lines:write(batch)
  local f = assert(io.open(arg[1], "a"))
  for _, item in ipairs(batch) do f:write(batch.partition, " ", item.offset, "\n") end
  f:close()
end
local n = 0
local sdf = app:dataframe(app:topic(%q))
sdf:update(function() n = n + 1; if n == 2000 then io.stderr:write("DONE 2000\n") end end)
sdf:sink(Lines{})
app:run{ timeout = tonumber(arg[2]) }
io.stderr:write("PROCESSED ", n, "\n")
]], group, input))
    local a = H.start_guarded(finally, dir, "member.lua", { args = { dir .. "/a.txt", "20" } })
    assert.is_true(H.eventually(function() return a:stderr():find("DONE 2000", 1, true) ~= nil end, 90), a:stderr())
    local bdir = dir .. "/b"
    os.execute("mkdir -p " .. H.quote(bdir))
    H.write(bdir .. "/member.lua", H.read(dir .. "/member.lua"))
    local b = H.start_guarded(finally, bdir, "member.lua", { args = { dir .. "/b.txt", "10" } })
    local rb = assert(b:wait(120))
    local ra = assert(a:wait(120))
    assert.are.equal(0, ra.code, ra.stderr)
    assert.are.equal(0, rb.code, rb.stderr)
    assert.truthy(ra.stderr:find("revoked 2 partitions", 1, true), ra.stderr)
    -- The revoke committed what A had processed: B started at the end.
    assert.truthy(rb.stderr:find("PROCESSED 0\n", 1, true), rb.stderr)
    -- Every message written once, by A, in the revoke's checkpoint.
    local seen, lines = {}, 0
    for line in (H.read(dir .. "/a.txt") or ""):gmatch("[^\n]+") do
      lines = lines + 1
      assert.is_nil(seen[line], "written twice: " .. line)
      seen[line] = true
    end
    assert.are.equal(2000, lines)
    assert.is_nil(H.read(dir .. "/b.txt"))
  end)
end)
