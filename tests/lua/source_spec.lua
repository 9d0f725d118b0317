local qhost = require("qhost")
local transfer = require("qhost.runtime.transfer")
local source = require("qhost.sources.source")
local Source = qhost.sources.Source

describe("Source", function()
  local Counter = Source:extend("Counter")
  function Counter:run() end

  it("keeps its fields and the defaults", function()
    local c = Counter{ name = "counter", limit = 100 }
    assert.are.equal("counter", c.name)
    assert.are.equal(100, c.limit)
    assert.are.equal(10, c.shutdown_timeout)
    assert.are.equal("Counter 'counter'", tostring(c))
    assert.are.equal(Counter, source.class_of(c))
  end)
  it("requires a name", function()
    assert.has_error(function() Counter{ limit = 1 } end, "Counter: name must be a non-empty string")
  end)
  it("checks shutdown_timeout and the callbacks", function()
    assert.has_error(function() Counter{ name = "c", shutdown_timeout = -1 } end)
    assert.has_error(function() Counter{ name = "c", on_client_connect_success = 5 } end)
  end)
  it("is not running outside its process, and cannot produce there", function()
    local c = Counter{ name = "c" }
    assert.is_false(c.running)
    assert.has_error(function() c:produce{ value = "x" } end,
      "Counter 'c': produce/flush only work while the source runs in its process")
  end)
  it("has a default topic source__<name> with JSON values", function()
    local t = Counter{ name = "ticks" }:default_topic()
    assert.are.equal("source__ticks", t.name)
    assert.are.equal("json", t.serializer_names.value_serializer)
  end)
  it("serializes with its producer topic", function()
    local c = Counter{ name = "c" }
    rawset(c, "producer_topic", c:default_topic())
    local msg = c:serialize{ key = "k", value = { n = 1 }, headers = { h = "v" }, timestamp_ms = 5 }
    assert.are.same({ key = "k", value = '{"n":1}', headers = { h = "v" }, timestamp = 5 }, msg)
  end)
  it("stop() ends running", function()
    local c = Counter{ name = "c" }
    rawset(c, "_started", true)
    assert.is_true(c.running)
    c:stop()
    assert.is_false(c.running)
  end)
  it("subclasses inherit and can override", function()
    local Child = Counter:extend("Child")
    function Child:default_topic() return "mine" end
    local x = Child{ name = "x" }
    assert.are.equal("mine", x:default_topic())
    assert.are.equal(Child, source.class_of(x))
    assert.are.equal("Child 'x'", source.describe(x))
  end)
  it("a base Source without run raises when run", function()
    local Bare = Source:extend("Bare")
    assert.has_error(function() Bare{ name = "b" }:run() end, "Bare 'b': run() is not implemented")
  end)
end)

describe("transfer", function()
  it("round-trips data and functions without upvalues", function()
    local text = assert(transfer.encode({ a = "x", n = 1.5, t = { 1, 2, { b = true } },
      f = function(row) return row.k .. "!" end, ["odd key"] = 3 }))
    local back = assert(transfer.decode(text))
    assert.are.equal("x", back.a)
    assert.are.equal(1.5, back.n)
    assert.are.same({ 1, 2, { b = true } }, back.t)
    assert.are.equal("v!", back.f({ k = "v" }))
    assert.are.equal(3, back["odd key"])
  end)
  it("carries decoded JSON values with their key order, arrays, nulls and int64", function()
    local codec = require("qhost.codec")
    local v = codec.json_decode('{"b":[1,{"c":null}],"a":{},"e":[],"big":123456789012345678}')
    local back = assert(transfer.decode(assert(transfer.encode({ data = v }))))
    assert.are.equal('{"b":[1,{"c":null}],"a":{},"e":[],"big":123456789012345678}', codec.json_encode(back.data))
    assert.are.equal("field x is a table with a metatable (an object)",
      select(2, transfer.encode({ x = setmetatable({}, { __index = {} }) })))
  end)
  it("refuses functions with upvalues, naming them", function()
    local prefix = "p"
    local text, err = transfer.encode({ key_extractor = function(r) return prefix .. r end })
    assert.is_nil(text)
    assert.are.equal("field key_extractor is a function with upvalues (prefix)", err)
  end)
  it("refuses cycles, userdata and threads with the field path", function()
    local cyc = {}
    cyc.self = cyc
    assert.are.equal("field opts.self is part of a cycle", select(2, transfer.encode({ opts = cyc })))
    assert.are.equal("field handle is a userdata", select(2, transfer.encode({ handle = io.stdout })))
    assert.are.equal("field co is a thread", select(2, transfer.encode({ co = coroutine.create(print) })))
    assert.are.equal("field list[2] is a userdata", select(2, transfer.encode({ list = { 1, io.stdout } })))
  end)
end)

describe("a Source class defined in a busted spec", function()
  it("is refused before its process starts, saying to put it in a module", function()
    local qhost = require("qhost")
    local app = qhost.Application{}
    local InSpec = Source:extend("InSpec")
    function InSpec:run() end
    local src = InSpec{ name = "in-spec" }
    app:add_source(src)
    app._broker = "127.0.0.1:9"
    local ok, err = pcall(require("qhost.runtime.source_process").spec, app, src, src:default_topic(), "app.lua")
    assert.is_false(ok)
    assert.truthy(err:find("class InSpec is defined in ", 1, true), err)
    assert.truthy(err:find("which busted runs; a source process cannot load a spec file. Define the class in a "
      .. "module", 1, true), err)
  end)
end)

describe("app:add_source", function()
  local Counter = Source:extend("Counter2")
  function Counter:run() end

  it("returns the default topic and registers it", function()
    local app = qhost.Application{}
    local t = app:add_source(Counter{ name = "c" })
    assert.are.equal("source__c", t.name)
  end)
  it("raises when the same source is added twice", function()
    local app = qhost.Application{}
    local c = Counter{ name = "c" }
    app:add_source(c)
    assert.has_error(function() app:add_source(c) end, "Counter2 'c': this source is already added to the app")
  end)
  it("raises when two sources feed one topic", function()
    local app = qhost.Application{}
    local t = app:topic("shared")
    app:add_source(Counter{ name = "a" }, t)
    assert.has_error(function() app:add_source(Counter{ name = "b" }, t) end,
      "Counter2 'b': topic 'shared' is already fed by Counter2 'a'")
  end)
  it("raises before starting anything when a field cannot travel", function()
    local app = qhost.Application{}
    local prefix = "x"
    local src = qhost.sources.CSVSource{ path = "orders.csv", name = "orders",
      key_extractor = function(row) return prefix .. row.id end }
    assert.has_error(function() app:add_source(src) end,
      "CSVSource 'orders': field key_extractor is a function with upvalues (prefix)")
  end)
  it("rejects what is not a source", function()
    local app = qhost.Application{}
    assert.has_error(function() app:add_source({ name = "x" }) end)
  end)
end)

describe("CSVSource", function()
  local CSVSource = qhost.sources.CSVSource
  it("is named after the file and has string keys", function()
    local s = CSVSource{ path = "data/input.csv" }
    assert.are.equal("input.csv", s.name)
    local t = s:default_topic()
    assert.are.equal("source__input.csv", t.name)
    assert.are.equal("string", t.serializer_names.key_serializer)
    assert.are.equal("json", t.serializer_names.value_serializer)
  end)
  it("checks its options", function()
    assert.has_error(function() CSVSource{} end, "CSVSource: path must be the path of a CSV file")
    assert.has_error(function() CSVSource{ path = "a.csv", dialect = "weird" } end,
      "CSVSource 'a.csv': unknown dialect \"weird\" (excel, excel-tab, unix)")
    assert.has_error(function() CSVSource{ path = "a.csv", delay = -1 } end)
    assert.has_error(function() CSVSource{ path = "a.csv", delimiter = ";;" } end)
    assert.has_error(function() CSVSource{ path = "a.csv", key_extractor = 5 } end)
  end)
end)
