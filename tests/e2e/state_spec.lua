-- Stateful processing end to end: per-key counts and sums that survive
-- restarts, a deleted state_dir (rebuilt from the changelog), a partition
-- moving to another instance after a SIGKILL, and state after group_by.
local H = require("helper")

-- The input: `n` keyed messages {"k": key, "v": i} over `keys` keys, by a
-- source in a separate run (on Kafka), or in the same app (embedded).
local FILL = [[
local qhost = require("qhost")
local app = qhost.Application{}
local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  for i = self.from, self.to do
    local k = "key" .. (i % self.keys)
    self:produce{ key = k, value = '{"k":"' .. k .. '","v":' .. i .. '}' }
  end
end
local topic = app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = tonumber(arg[5]) } })
app:add_source(Fill{ name = arg[1], from = tonumber(arg[2]), to = tonumber(arg[3]), keys = tonumber(arg[4]) }, topic)
app:run()
]]

-- The stateful app: per key a running count and sum; prints each output
-- as "key count sum". args: input topic, group, state_dir, partitions,
-- how many outputs to wait for.
local COUNTER = [[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = arg[2], auto_offset_reset = "earliest", state_dir = arg[3],
  commit_interval = 0.5, consumer_extra_config = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 } }
local topic = app:topic(arg[1], { config = qhost.TopicConfig{ num_partitions = tonumber(arg[4]) } })
local sdf = app:dataframe(topic)
sdf = sdf:apply(function(v, state)
  local count, sum = state:get("count", 0) + 1, state:get("sum", 0) + v.v
  state:set("count", count)
  state:set("sum", sum)
  return { k = v.k, count = count, sum = sum }
end, { stateful = true })
sdf:update(function(v) io.stdout:write(v.k, " ", v.count, " ", v.sum, "\n") end)
local count = tonumber(arg[5])
app:run{ count = count ~= 0 and count or nil, timeout = tonumber(arg[6] or "20") }
]]

-- The last line per key: { count, sum }.
local function final_counts(stdout)
  local last = {}
  for k, c, s in stdout:gmatch("(%S+) (%d+) (%d+)\n") do last[k] = { tonumber(c), tonumber(s) } end
  return last
end

-- What the counts must be after messages 1..n over `keys` keys.
local function expected(n, keys)
  local want = {}
  for i = 1, n do
    local k = "key" .. (i % keys)
    want[k] = want[k] or { 0, 0 }
    want[k][1] = want[k][1] + 1
    want[k][2] = want[k][2] + i
  end
  return want
end

local function fill(dir, topic, from, to, keys, partitions)
  local r = H.run(dir, "fill.lua", { args = { topic, tostring(from), tostring(to), tostring(keys),
    tostring(partitions) }, timeout = 120 })
  assert.are.equal(0, r.code, r.stderr)
end

local function setup()
  local dir = H.tmpdir()
  H.write(dir .. "/fill.lua", FILL)
  H.write(dir .. "/counter.lua", COUNTER)
  return dir
end

describe("state #" .. H.mode, function()
  it("keeps a running count and sum per key, every key apart", function()
    local dir = setup()
    local topic, group = H.unique("st"), H.unique("g")
    if H.mode == "embedded" then
      -- one process: the source in the counting app
      H.write(dir .. "/both.lua", COUNTER:gsub("local sdf = app:dataframe%(topic%)", [[
local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  for i = 1, 600 do
    local k = "key" .. (i %% 7)
    self:produce{ key = k, value = '{"k":"' .. k .. '","v":' .. i .. '}' }
  end
end
local sdf = app:dataframe{ topic = topic, source = Fill{ name = arg[1] } }]]))
      local r = H.run(dir, "both.lua", { args = { topic, group, dir .. "/state", "2", "600" }, timeout = 120 })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same(expected(600, 7), final_counts(r.stdout))
      return
    end
    fill(dir, topic, 1, 600, 7, 2)
    local r = H.run(dir, "counter.lua", { args = { topic, group, dir .. "/state", "2", "600" }, timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(expected(600, 7), final_counts(r.stdout))
  end)

  it("continues its counts after a restart, and after its state_dir is deleted (rebuilt from the changelog)",
    function()
    if H.mode ~= "kafka" then pending("state across runs needs a broker that outlives the app: real Kafka") return end
    local dir = setup()
    local topic, group = H.unique("st2"), H.unique("g")
    local state_dir = dir .. "/state"
    fill(dir, topic, 1, 300, 5, 2)
    local r = H.run(dir, "counter.lua", { args = { topic, group, state_dir, "2", "300" }, timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    -- Restart with the same state_dir: counts go on.
    fill(dir, topic, 301, 500, 5, 2)
    r = H.run(dir, "counter.lua", { args = { topic, group, state_dir, "2", "200" }, timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(expected(500, 5), final_counts(r.stdout))
    -- state_dir gone: the stores come back from the changelog, same counts.
    os.execute("rm -rf " .. H.quote(state_dir))
    fill(dir, topic, 501, 600, 5, 2)
    r = H.run(dir, "counter.lua", { args = { topic, group, state_dir, "2", "100" }, timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("recovered from changelog", 1, true), r.stderr)
    assert.are.same(expected(600, 5), final_counts(r.stdout))
  end)

  it("three instances on 3 partitions, one SIGKILLed: the others take over its partitions and its counts",
    function()
    if H.mode ~= "kafka" then pending("a consumer group of several processes: real Kafka") return end
    local dir = setup()
    local topic, group = H.unique("st3"), H.unique("g")
    local N, KEYS = 3000, 30
    -- Each instance is slow enough to be killed mid-way; each has its own
    -- state_dir, as on three machines. The input comes once all three have
    -- partitions, so each has a third of it to do (filled before, the first
    -- one could do most of it alone before the others joined).
    H.write(dir .. "/slow.lua", COUNTER:gsub("local sdf = app:dataframe%(topic%)",
      "local sdf = app:dataframe(topic)\nsdf:update(function() qhost.sleep(0.003) end)"))
    local workers = {}
    for i = 1, 3 do
      local wdir = dir .. "/w" .. i
      os.execute("mkdir -p " .. H.quote(wdir))
      H.write(wdir .. "/slow.lua", H.read(dir .. "/slow.lua"))
      workers[i] = H.start_guarded(finally, wdir, "slow.lua", { args = { topic, group, wdir .. "/state", "3", "0", "12" } })
    end
    assert.is_true(H.eventually(function()
      for i = 1, 3 do if not workers[i]:stderr():find("assigned [1-9]") then return false end end
      return true
    end, 90), workers[1]:stderr())
    fill(dir, topic, 1, N, KEYS, 3)
    assert.is_true(H.eventually(function() return #H.lines(workers[2]:stdout()) >= 100 end, 60), workers[2]:stderr())
    workers[2]:signal("KILL")
    local outputs = {}
    for i = 1, 3 do
      local r = workers[i]:wait(240)
      if i ~= 2 then assert.are.equal(0, r.code, r.stderr) end
      outputs[#outputs + 1] = workers[i]:stdout()
    end
    -- The last count printed for each key, by whichever instance had it
    -- last, is the exact count: the survivor went on from the changelog.
    local want = expected(N, KEYS)
    local last = {}
    for _, text in ipairs(outputs) do
      for k, c, s in text:gmatch("(%S+) (%d+) (%d+)\n") do
        local c_, s_ = tonumber(c), tonumber(s)
        if not last[k] or c_ > last[k][1] then last[k] = { c_, s_ } end
      end
    end
    assert.are.same(want, last)
  end)

  it("after group_by, counts per new key on the repartition topic's partitions", function()
    local dir = setup()
    local topic = H.unique("stg")
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest", state_dir = %q }
local Src = qhost.sources.Source:extend("Src")
function Src:run()
  for i = 1, 200 do self:produce{ key = "ignored" .. i, value = '{"user":"u' .. (i %% 4) .. '"}' } end
end
local topic = app:topic(%q, { config = qhost.TopicConfig{ num_partitions = 2 } })
local sdf = app:dataframe{ topic = topic, source = Src{ name = %q } }
sdf = sdf:group_by("user")
sdf = sdf:apply(function(v, key, ts, headers, state)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  return key .. "=" .. n
end, { stateful = true, metadata = true })
local out = app:run{ count = 200, timeout = 30 }
local last = {}
for _, s in ipairs(out) do local k, n = s:match("(.-)=(%%d+)"); last[k] = tonumber(n) end
print(last.u0, last.u1, last.u2, last.u3)
]], H.unique("g"), dir .. "/state", topic, topic))
    local r = H.run(dir, "app.lua", { timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("50\t50\t50\t50\n", r.stdout)
  end)
end)
