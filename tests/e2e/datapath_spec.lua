-- The data path corrupts nothing, drops nothing and refuses what it cannot
-- do: exact counts, serializer failures through the error policy, printing
-- that never stops the app, header bytes kept exact under GC pressure.
local H = require("helper")

-- An app script: a Raw source producing `values` (JSON text) to a topic,
-- with `options` added to the Application and `body` after the dataframe.
local function script(group, topic, options, values, body)
  return string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" %s }
local Raw = qhost.sources.Source:extend("Raw")
function Raw:run()
  for _, v in ipairs(self.values) do self:produce{ key = v.key, value = v.value } end
end
local topic = app:topic(%q, { key_deserializer = "bytes" })
local sdf = app:dataframe{ topic = topic, source = Raw{ name = %q, values = %s } }
%s
]], group, options, topic, topic, values, body)
end

local function values_text(n)
  local list = {}
  for i = 1, n do list[i] = string.format('{ key = "k%d", value = \'{"n":%d}\' }', i, i) end
  return "{ " .. table.concat(list, ", ") .. " }"
end

describe("data path #" .. H.mode, function()
  it("run{ count = N } stops after exactly N outputs, and commits no message it did not process", function()
    local dir = H.tmpdir()
    local topic, group = H.unique("count"), H.unique("g")
    H.write(dir .. "/app.lua", script(group, topic, "", values_text(10), [[
sdf = sdf:apply(function(v) return v.n end)
local out = app:run{ count = tonumber(arg[1]), timeout = 20 }
print(#out, table.concat(out, ","))
]]))
    local r = H.run(dir, "app.lua", { args = { "3" }, timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    -- All ten arrive in one batch: only three are processed.
    assert.are.equal("3\t1,2,3\n", r.stdout)
    if H.mode == "kafka" then
      -- The same group goes on at the fourth message: 4..10 were not committed.
      H.write(dir .. "/next.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local sdf = app:dataframe(app:topic(%q)):apply(function(v) return v.n end)
local out = app:run{ count = 2, timeout = 20 }
print(table.concat(out, ","))
]], group, topic))
      r = H.run(dir, "next.lua", { timeout = 90 })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("4,5\n", r.stdout)
    end
  end)

  it("headers an output cannot have go through on_producer_error, never sent with some dropped or made text", function()
    -- (a list with named headers beside it lost the named ones; a table
    -- value went out as "table: 0x...")
    local dir = H.tmpdir()
    local topic, out_topic = H.unique("hdr"), H.unique("hdr-out")
    H.write(dir .. "/app.lua", script(H.unique("g"), topic, [[, on_producer_error = function(err)
      io.stderr:write("SKIP ", err:match("[^\n]*"), "\n")
      return true
    end]], "{ { value = '{\"n\":1}' }, { value = '{\"n\":2}' }, { value = '{\"n\":3}' } }", string.format([[
local out = app:topic(%q)
sdf = sdf:set_headers(function(v)
  if v.n == 1 then return { { "a", "b" }, trace = "t1" } end
  if v.n == 2 then return { a = { 1 } } end
  return { { "a", "b" }, { "n", v.n } }
end)
sdf:to_topic(out)
app:dataframe(out):print{ pretty = false, metadata = true }
app:run{ count = 4, timeout = 20 }   -- 3 through to_topic (2 skipped), 1 printed
]], out_topic)))
    local r = H.run(dir, "app.lua", { timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("SKIP produce to " .. out_topic .. ": mix a list of pairs with named headers (trace)",
      1, true), r.stderr)
    assert.truthy(r.stderr:find("SKIP produce to " .. out_topic .. ': header "a": the value must be a string, got table',
      1, true), r.stderr)
    local printed = H.json_lines(r.stdout)
    assert.are.equal(1, #printed)
    assert.are.same({ n = 3 }, printed[1].value)
    assert.are.same({ { "a", "b" }, { "n", "3" } }, printed[1].headers)
  end)

  it("a value the output topic's serializer refuses goes through on_processing_error, never as a null", function()
    local dir = H.tmpdir()
    local topic, out_topic = H.unique("ser"), H.unique("ints")
    H.write(dir .. "/app.lua", script(H.unique("g"), topic, [[, on_processing_error = function(err, row)
      io.stderr:write("SKIP ", err:match("[^\n]*"), "\n")
      return true
    end]], "{ { value = '{\"n\":1.5}' }, { value = '{\"n\":7}' } }", string.format([[
local ints = app:topic(%q, { value_serializer = "int", value_deserializer = "int" })
sdf = sdf:apply(function(v) return v.n end)
sdf:to_topic(ints)
app:dataframe(ints):print{ pretty = false }
app:run{ count = 2, timeout = 20 }
]], out_topic)))
    local r = H.run(dir, "app.lua", { timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("SKIP error processing the message at topic '" .. topic:gsub("%p", "%%%0")
      .. "' partition 0 offset 0: topic '" .. out_topic:gsub("%p", "%%%0") .. "': cannot serialize value: "
      .. "int value must be an integer from %-2147483648 to 2147483647, got 1.5"), r.stderr)
    -- Only 7 reached the output topic: no tombstone for 1.5.
    local printed = H.json_lines(r.stdout)
    local ints = {}
    for _, line in ipairs(printed) do if type(line.value) == "number" then ints[#ints + 1] = line.value end end
    assert.are.same({ 7 }, ints)
  end)

  it("prints keys that are not UTF-8 escaped, and goes on", function()
    local dir = H.tmpdir()
    local topic = H.unique("bytes")
    H.write(dir .. "/app.lua", script(H.unique("g"), topic, "",
      "{ { key = '\\255\\254k', value = '{\"n\":1}' }, { key = 'ok', value = '{\"n\":2}' } }", [[
sdf:print{ pretty = false, metadata = true }
app:run{ count = 2, timeout = 20 }
]]))
    local r = H.run(dir, "app.lua", { timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    local lines = H.lines(r.stdout)
    assert.are.equal(2, #lines, r.stdout)
    assert.truthy(lines[1]:find('"key":"\\\\xff\\\\xfek"', 1, true), lines[1])
    assert.truthy(lines[2]:find('"key":"ok"', 1, true), lines[2])
  end)

  it("keeps every header byte-exact under garbage-collection pressure, from a source and through set_headers", function()
    local dir = H.tmpdir()
    local topic, out = H.unique("hdr"), H.unique("hdrout")
    H.write(dir .. "/app.lua", string.format([=[
local qhost = require("qhost")
collectgarbage("setpause", 1)
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local Headers = qhost.sources.Source:extend("Headers")
function Headers:run()
  collectgarbage("setpause", 1)
  for i = 1, self.count do
    -- numbers become header text through tostring: fresh strings each time
    self:produce{ value = '{"i":' .. i .. '}', headers = { a = i * 1000 + 1, b = i * 3.5, c = -i } }
  end
end
local src = Headers{ name = %q, count = 3000 }
local sdf = app:dataframe{ topic = app:topic(%q), source = src }
local output = app:topic(%q)
sdf = sdf:set_headers(function(v, key, ts, headers)
  local copy = {}
  for _, h in ipairs(headers) do copy[#copy + 1] = { h[1] .. "2", tostring(tonumber(h[2]) * 2) } end
  return copy
end)
sdf:to_topic(output)
local bad, seen = 0, 0
app:dataframe(output):update(function(v, key, ts, headers)
  seen = seen + 1
  local got = {}
  for _, h in ipairs(headers) do got[h[1]] = h[2] end
  local i = v.i
  if got.a2 ~= tostring((i * 1000 + 1) * 2) or got.b2 ~= tostring(i * 3.5 * 2) or got.c2 ~= tostring(-i * 2) then
    bad = bad + 1
    if bad < 5 then io.stderr:write("BAD ", i, " ", tostring(got.a2), " ", tostring(got.b2), "\n") end
  end
end, { metadata = true })
app:run{ count = 6000, timeout = 30 }
print(seen, bad)
]=], H.unique("g"), topic, topic, out))
    local r = H.run(dir, "app.lua", { timeout = 180 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("3000\t0\n", r.stdout)
  end)

  it("a failed delivery skipped by on_producer_error loses only that output, logged with topic, partition and key",
    function()
    if H.mode ~= "kafka" then pending("needs a broker that refuses a message: real Kafka") return end
    local dir = H.tmpdir()
    local topic, out = H.unique("dlv"), H.unique("small")
    -- One message per request (batch.num.messages = 1): the broker's limit
    -- applies to a whole record batch.
    H.write(dir .. "/app.lua", script(H.unique("g"), topic, [[, on_producer_error = function(err)
      io.stderr:write("PRODUCER ", err, "\n")
      return true
    end, producer_extra_config = { ["batch.num.messages"] = 1 }]], values_text(5), string.format([[
-- The output topic takes at most 1,000 bytes per message: the broker refuses
-- message 2 (2,000 bytes) at delivery, after the messages behind it were sent.
local small = app:topic(%q, { config = qhost.TopicConfig{ extra_config = { ["max.message.bytes"] = "1000" } } })
sdf = sdf:apply(function(v) if v.n == 2 then v.pad = string.rep("x", 2000) end return v end)
sdf:to_topic(small)
app:run{ count = 5, timeout = 20 }
]], out)))
    local r = H.run(dir, "app.lua", { timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("PRODUCER delivery to topic '" .. out:gsub("%p", "%%%0")
      .. "' partition 0 failed: [^\n]* %(key \"k2\"%)"), r.stderr)
    assert.truthy(r.stderr:find("on_producer_error skipped a failed delivery", 1, true), r.stderr)
    local got = {}
    local topic_reader = require("qhost.kafka.topic_reader")
    assert(topic_reader.read_to_end({ ["bootstrap.servers"] = H.broker }, out, {
      on_record = function(rec) got[#got + 1] = rec.key end }))
    assert.are.same({ "k1", "k3", "k4", "k5" }, got)
  end)

  it("a failed delivery nobody suppresses stops the app and commits nothing past it", function()
    if H.mode ~= "kafka" then pending("needs a broker that refuses a message: real Kafka") return end
    local dir = H.tmpdir()
    local topic, out, group = H.unique("dlv2"), H.unique("small2"), H.unique("g")
    local body = string.format([[
local small = app:topic(%q, { config = qhost.TopicConfig{ extra_config = { ["max.message.bytes"] = "1000" } } })
sdf = sdf:apply(function(v) if v.n == 2 and not os.getenv("SMALL") then v.pad = string.rep("x", 2000) end return v end)
sdf:to_topic(small)
app:run{ count = 5, timeout = 20 }
]], out)
    H.write(dir .. "/app.lua", script(group, topic, "", values_text(5), body))
    local r = H.run(dir, "app.lua", { timeout = 90 })
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:find("delivery to topic '" .. out:gsub("%p", "%%%0") .. "' partition 0 failed"), r.stderr)
    -- The same group again: it starts at or before message 2, so message 2 is
    -- processed again (nothing was committed past it).
    H.write(dir .. "/again.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
local sdf = app:dataframe(app:topic(%q)):apply(function(v) return v.n end)
local out = app:run{ count = 1, timeout = 20 }
print(out[1])
]], group, topic))
    r = H.run(dir, "again.lua", { timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    assert.is_true(tonumber(r.stdout) <= 2, r.stdout)
  end)

  it("SIGTERM while waiting for room in a full producer queue stops the app, committing nothing unsent", function()
    if H.mode ~= "kafka" then pending("input from another process, then an unreachable output: real Kafka") return end
    local dir = H.tmpdir()
    local topic = H.unique("full")
    -- The input is written first, by another app with a source.
    H.write(dir .. "/fill.lua", script(H.unique("g"), topic, "", values_text(50), "app:run{ count = 50, timeout = 20 }"))
    local r = H.run(dir, "fill.lua", { timeout = 90 })
    assert.are.equal(0, r.code, r.stderr)
    -- The worker's output producer talks to a broker that is not there: its
    -- queue of 10 fills and produce waits for room.
    H.write(dir .. "/app.lua", string.format([[
local qhost = require("qhost")
local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest",
  producer_extra_config = { ["bootstrap.servers"] = "127.0.0.1:1", ["queue.buffering.max.messages"] = 10,
                            ["message.timeout.ms"] = 600000 } }
local sdf = app:dataframe(app:topic(%q))
local n = 0
-- The 11th output finds the queue of 10 full: it waits there.
sdf:update(function() n = n + 1; if n == 11 then io.stderr:write("WAITING\n") end end)
sdf:to_topic(app:topic(%q))
app:run()
]], H.unique("g"), topic, H.unique("nowhere")))
    local p = H.start(dir, "app.lua")
    assert.is_true(H.eventually(function() return p:stderr():find("WAITING", 1, true) ~= nil end, 60), p:stderr())
    p:signal("TERM")
    r = p:wait(60)
    assert.truthy(r, "the app did not stop within 60 s of SIGTERM")
    assert.are_not.equal(137, r.code)
    assert.truthy(r.stderr:find("nothing committed", 1, true), r.stderr)
  end)
end)
