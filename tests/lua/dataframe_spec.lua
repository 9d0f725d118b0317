local qhost = require("qhost")
local printing = require("qhost.runtime.printing")

local function new_sdf()
  local app = qhost.Application{}
  return app:dataframe(app:topic("input")), app
end

describe("StreamingDataFrame", function()
  it("apply replaces the value", function()
    local sdf = new_sdf()
    sdf = sdf:apply(function(v) return v.x * 2 end)
    assert.are.same({ 6 }, (sdf:test({ x = 3 })))
  end)
  it("test lists an output of nil as null, as Quix lists None, in every branch", function()
    local sdf = new_sdf()
    sdf:apply(function(v) if v.x == 1 then return nil end return v.x end)
    sdf:apply(function(v) return v.x * 10 end)
    assert.are.same({ qhost.json.null, 10 }, (sdf:test({ x = 1 })))
    assert.are.same({ 2, 20 }, (sdf:test({ x = 2 })))
    local with_metadata = sdf:test({ x = 1 }, { metadata = true, key = "k" })
    assert.are.equal(2, #with_metadata)
    assert.is_nil(with_metadata[1].value)
    assert.are.equal("k", with_metadata[1].key)
  end)
  it("apply with expand emits each item", function()
    local sdf = new_sdf()
    sdf = sdf:apply(function(v) return v.items end, { expand = true })
    assert.are.same({ "a", "b", "c" }, (sdf:test({ items = { "a", "b", "c" } })))
    assert.are.same({}, (sdf:test({ items = {} })))
    -- an object is not a list: an error, not a silent nothing
    local ok, err = pcall(sdf.test, sdf, { items = { a = 1 } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("must return a list, got an object", 1, true), tostring(err))
  end)
  it("apply with metadata gets key, timestamp and headers", function()
    local sdf = new_sdf()
    sdf = sdf:apply(function(v, key, ts, headers)
      return { v = v, key = key, ts = ts, h = headers[1][2] }
    end, { metadata = true })
    local out = sdf:test(1, { key = "k", timestamp = 42, headers = { { "h", "hv" } } })
    assert.are.same({ { v = 1, key = "k", ts = 42, h = "hv" } }, out)
  end)
  it("update mutates and keeps the value", function()
    local sdf = new_sdf()
    sdf = sdf:update(function(v) v.seen = true; return "ignored" end)
    assert.are.same({ { a = 1, seen = true } }, (sdf:test({ a = 1 })))
  end)
  it("filter drops falsy results", function()
    local sdf = new_sdf()
    sdf = sdf:filter(function(v) return v.n > 2 end)
    assert.are.same({}, (sdf:test({ n = 1 })))
    assert.are.same({ { n = 3 } }, (sdf:test({ n = 3 })))
  end)
  it("filter with metadata sees the key", function()
    local sdf = new_sdf()
    sdf = sdf:filter(function(_, key) return key == "keep" end, { metadata = true })
    assert.are.same({}, (sdf:test(1, { key = "drop" })))
    assert.are.same({ 1 }, (sdf:test(1, { key = "keep" })))
  end)
  it("two operations on one dataframe make two branches with their own copies", function()
    local sdf = new_sdf()
    sdf:apply(function(v) v.a = "left"; return v end)
    sdf:apply(function(v) return v.a end)
    assert.are.same({ { a = "left" }, "orig" }, (sdf:test({ a = "orig" })))
  end)
  it("in-place operations extend the dataframe they are called on (Quix's rules), so nothing counts twice", function()
    local sdf, app = new_sdf()
    local out = app:topic("out")
    sdf:update(function(v) v.u = true end)     -- not assigned: still this branch
    sdf:set("s", 1)
    sdf:drop("gone")
    sdf:fill{ f = 0 }
    sdf:to_topic(out)
    local outputs, produced = sdf:test({ gone = 1 })
    assert.are.same({ { u = true, s = 1, f = 0 } }, outputs)
    assert.are.equal(1, #produced)
    -- apply/filter are not in place: not assigned, they make a branch
    local sdf2 = new_sdf()
    sdf2:apply(function(v) return v * 10 end)
    assert.are.same({ 10, 1 }, (sdf2:update(function() end):test(1)))   -- branches in the order made
  end)
  it("test{ metadata = true } returns key, timestamp and headers, so group_by and set_timestamp can be tested", function()
    local sdf = new_sdf()
    sdf = sdf:group_by("user"):set_timestamp(function(v) return v.ts end)
    local out = sdf:test({ user = "u1", ts = 77 }, { key = "old", timestamp = 5, headers = { { "h", "1" } },
      metadata = true })
    assert.are.same({ { value = { user = "u1", ts = 77 }, key = "u1", timestamp = 77, headers = { { "h", "1" } } } }, out)
  end)
  it("to_topic sends the value with the key (or a new key) and goes on", function()
    local sdf, app = new_sdf()
    local out = app:topic("out")
    sdf = sdf:to_topic(out, { key = function(v) return "k" .. v.id end })
    local outputs, produced = sdf:test({ id = 7 }, { key = "old" })
    assert.are.same({ { id = 7 } }, outputs)
    assert.are.same({ { topic = "out", key = "k7", value = { id = 7 } } }, produced)
  end)
  it("rejects what is not a function or a topic", function()
    local sdf = new_sdf()
    assert.has_error(function() sdf:apply(5) end, "StreamingDataFrame:apply expects a function (or a Series), got number")
    assert.has_error(function() sdf:filter("x") end)
    assert.has_error(function() sdf:to_topic("out") end)
    assert.has_error(function() sdf:apply(function() end, { stateful = "yes" }) end)
  end)
  it("print formats one compact JSON line per message", function()
    assert.are.equal('{"value":{"a":"1"}}',
      printing.format(false, false, qhost.json.decode('{"a":"1"}')))
    assert.are.equal('{"value":{"b":"2","a":"1"},"key":"k","timestamp":5,"headers":null}',
      printing.format(false, true, qhost.json.decode('{"b":"2","a":"1"}'), "k", 5, nil))
    assert.are.equal('{"value":3,"key":null,"timestamp":0,"headers":[["h","v"]]}',
      printing.format(false, true, 3, nil, 0, { { "h", "v" } }))
  end)
  it("print never fails: bytes that are not UTF-8 print as Python's backslashreplace", function()
    assert.are.equal('{"value":{"a":"\\\\xffx"},"key":"\\\\xfe\\\\xe2\\\\x82ok","timestamp":5,"headers":[["h","\\\\xc8"]]}',
      printing.format(false, true, { a = "\255x" }, "\254\226\130ok", 5, { { "h", "\200" } }))
    -- valid multi-byte text stays as it is; overlong and surrogate forms do not
    assert.are.equal('{"value":"é\\\\xc0\\\\xaf\\\\xed\\\\xa0\\\\x80"}',
      printing.format(false, false, "é\192\175\237\160\128"))
    assert.truthy(printing.format(true, false, { f = print }):find('"f": "function: ', 1, true))
  end)
  it("print pretty indents the same object", function()
    assert.are.equal('{\n  "value": {\n    "a": 1\n  }\n}', printing.format(true, false, { a = 1 }))
  end)
end)

describe("StreamingDataFrame:concat", function()
  it("feeds what follows from both dataframes", function()
    local app = qhost.Application{}
    local a = app:dataframe(app:topic("a")):apply(function(v) return "a:" .. v end)
    local b = app:dataframe(app:topic("b")):apply(function(v) return "b:" .. v end)
    local both = a:concat(b):apply(function(v) return v .. "!" end)
    assert.are.equal(both.root, a.root)
    assert.are.same({ "a:1!" }, (a:test(1)))
    assert.are.same({ "b:2!" }, (b:test(2)))
  end)
  it("rejects what is not a dataframe", function()
    local app = qhost.Application{}
    assert.has_error(function() app:dataframe(app:topic("a")):concat({}) end,
      "StreamingDataFrame:concat expects a StreamingDataFrame, got table")
  end)

end)

-- What Quix does with the same dataframe (its filter, Series truth,
-- contains, set, fill, drop, set_headers and group_by).
describe("StreamingDataFrame, as Quix", function()
  local null = qhost.json.null
  it("filter: a Series' null, 0 and \"\" are false, a function's null is false", function()
    local function through(build, v) return #(build(new_sdf()):test(v)) end
    local by_series = function(sdf) return sdf:filter(sdf:col("f")) end
    local by_fn = function(sdf) return sdf:filter(function(v) return v.f end) end
    for _, falsy in ipairs({ null, 0, "", false }) do
      assert.are.equal(0, through(by_series, { f = falsy }), tostring(falsy))
    end
    assert.are.equal(1, through(by_series, { f = "yes" }))
    assert.are.equal(0, through(by_fn, { f = null }))
    assert.are.equal(1, through(by_fn, { f = 0 }))   -- a Lua function: 0 is true in Lua
  end)
  it("contains takes a list of keys: all of them", function()
    local sdf = new_sdf()
    assert.is_true(sdf:contains({ "x", "y" })({ x = 1, y = null }))
    assert.is_false(sdf:contains({ "x", "y" })({ x = 1 }))
  end)
  it("set of a nil result sets null", function()
    local sdf = new_sdf()
    sdf = sdf:set("y", function() return nil end)
    assert.are.same({ { x = 1, y = null } }, (sdf:test({ x = 1 })))
  end)
  it("fill leaves a value that is not a table alone; drop of no columns drops nothing", function()
    assert.are.same({ 5 }, (new_sdf():fill{ x = 0 }:test(5)))
    local sdf = new_sdf()
    assert.are.equal(sdf, sdf:drop({}))
  end)
  it("set_headers gets a list of its own, empty for a message without headers", function()
    local sdf = new_sdf()
    local add = sdf:set_headers(function(_, _, _, h) h[#h + 1] = { "id", "1" }; return h end)
    add:apply(function(_, _, _, h) return h end, { metadata = true })
    local other = sdf:apply(function(_, _, _, h) return h and #h or 0 end, { metadata = true })
    assert.are.same({ { { "id", "1" } }, 0 }, (add:test({ x = 1 })))
    local outputs = sdf:test({ x = 1 }, { headers = { { "a", "1" } } })
    assert.are.same({ { { "a", "1" }, { "id", "1" } }, 1 }, outputs)   -- the other branch still has 1 header
    assert.truthy(other)
  end)
  it("after a group_by of a one-partition topic, state and windows have stores of their own", function()
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("one"))
    local function counter(label)
      return function(_, state)
        local n = state:get("n", 0) + 1
        state:set("n", n)
        return { [label] = n }
      end
    end
    sdf:apply(counter("before"), { stateful = true })
    sdf:group_by("c"):apply(counter("after"), { stateful = true })
    -- the message key and the new key are the same: one store would count both
    assert.are.same({ { before = 1 }, { after = 1 } }, (sdf:test({ c = "k" }, { key = "k" })))
    assert.are.same({ { before = 2 }, { after = 2 } }, (sdf:test({ c = "k" }, { key = "k" })))
    sdf:tumbling_window{ duration_ms = 10 }:count():final()
    sdf:group_by("c", { name = "again" }):tumbling_window{ duration_ms = 10 }:count():final()   -- no "already exists"
    assert.truthy(app._stores.one["groupby--c--default"] and app._stores.one["default"])
  end)
  it("group_by a column the value lacks is an error of the message", function()
    local sdf = new_sdf():group_by("c")
    local ok, err = pcall(sdf.test, sdf, { d = "x" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find('group_by (', 1, true) and tostring(err):find('has no field "c"', 1, true),
      tostring(err))
  end)
end)
