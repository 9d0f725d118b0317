-- Fresh values (qhost.runtime.pipeline): the compiled pipeline tells the
-- producer that a value is fresh (a table the runtime made that holds
-- exactly its order's keys, so the JSON writer does not check them) only
-- while no user code has had it. A value wrongly passed as fresh would
-- lose the keys a user function added: every kind of node that runs user
-- code must end it. Checked by compiling pipelines with a runtime that
-- records what to_topic passes, and end to end through the merge.
local qhost = require("qhost")
local codec = require("qhost.codec")
local ffi = require("ffi")
local json_out = require("qhost.runtime.json_out")
local merge = require("qhost.joins.merge")
local pipeline = require("qhost.runtime.pipeline")
local windowed = require("qhost.runtime.state.windowed")

-- Runs value through sdf's pipeline compiled with fresh input (or not):
-- returns { [topic name] = { fresh flag, JSON text the producer would get }, ... }
-- for every to_topic reached.
local function produced(sdf, value, fresh_input, opts)
  opts = opts or {}
  local got = {}
  local rt = {
    ctx = { topic = sdf.topic.name, partition = 0, offset = 0 },
    leaf = function() end,
    write = function() end,
    add_sink = function() end,
    produce = function(topic, v, _, _, _, fresh)
      local address, len = json_out.encode(v, fresh)
      assert.is_not_nil(address, tostring(len))
      got[topic.name] = { fresh, ffi.string(ffi.cast("const char *", address), len) }
    end,
  }
  local stores = {}
  rt.window_tx = function(name)
    stores[name] = stores[name] or windowed.new(windowed.memory_partition())
    return function() return stores[name] end
  end
  rt.join_tx = require("qhost.joins").test_stores(sdf.root)
  local process = pipeline.compile(sdf, rt, fresh_input)
  for _, m in ipairs(opts.before or {}) do m.process(rt) end
  process(value, opts.key or "k", opts.timestamp or 1000, nil)
  return got
end

local function decoded(text) return (codec.json_decode(text)) end

describe("fresh values", function()
  local app, input, out1, out2
  before_each(function()
    app = qhost.Application{}
    input = app:topic("in")
    out1, out2 = app:topic("out1"), app:topic("out2")
  end)

  it("go to the producer as fresh straight from the decoder, and through to_topic", function()
    local sdf = app:dataframe(input)
    sdf:to_topic(out1):to_topic(out2)
    local got = produced(sdf, decoded('{"a":1}'), true)
    assert.are.same({ true, '{"a":1}' }, got.out1)
    assert.are.same({ true, '{"a":1}' }, got.out2)
    -- a topic whose values are not decoded by the JSON deserializer
    got = produced(sdf, decoded('{"a":1}'), false)
    assert.are.same({ false, '{"a":1}' }, got.out1)
  end)

  it("stop being fresh at every node that runs user code, which may add a key", function()
    local function add(v) v.added = true return v end
    local cases = {
      apply = function(s) return s:apply(add) end,
      update = function(s) return s:update(function(v) v.added = true end) end,
      filter = function(s) return s:filter(function(v) v.added = true return true end) end,
      ["apply with metadata"] = function(s) return s:apply(function(v) return add(v) end, { metadata = true }) end,
      ["to_topic with a key function"] = function(s)
        return s:to_topic(out2, { key = function(v) v.added = true return "k2" end })
      end,
      set_timestamp = function(s) return s:set_timestamp(function(v) v.added = true return 5 end) end,
      set_headers = function(s) return s:set_headers(function(v) v.added = true return {} end) end,
      print = function(s) return s:update(function(v) v.added = true end):print() end,
    }
    for name, make in pairs(cases) do
      local a = qhost.Application{}
      out2 = a:topic("out2")
      local sdf = make(a:dataframe(a:topic("in")))
      sdf:to_topic(a:topic("out1"))
      local got = produced(sdf, decoded('{"a":1}'), true)
      assert.are.same({ false, '{"a":1,"added":true}' }, got.out1, name)
    end
  end)

  it("stay fresh in a branch with no user code while another branch changes its own copy", function()
    local sdf = app:dataframe(input)
    sdf:apply(function(v) v.b = 2 return v end):to_topic(out1)
    sdf:to_topic(out2)
    local got = produced(sdf, decoded('{"a":1}'), true)
    assert.are.same({ false, '{"a":1,"b":2}' }, got.out1)
    assert.are.same({ true, '{"a":1}' }, got.out2)
  end)

  it("come out of a window, and out of a join's built-in merge but not a merge function's", function()
    local sdf = app:dataframe(input)
    sdf:tumbling_window{ duration_ms = 1000 }:count():current():to_topic(out1)
    local got = produced(sdf, decoded('{"a":1}'), true)
    assert.are.same({ true, '{"start":1000,"end":2000,"value":1}' }, got.out1)

    local app1 = qhost.Application{}
    local right = app1:dataframe(app1:topic("right"))
    local left = app1:dataframe(app1:topic("in"))
    left:join_asof(right, { how = "left", on_merge = "keep-left" }):to_topic(app1:topic("out1"))
    got = produced(left, decoded('{"a":1}'), true)
    assert.are.same({ true, '{"a":1}' }, got.out1)

    local app2 = qhost.Application{}
    local right2 = app2:dataframe(app2:topic("right"))
    local left2 = app2:dataframe(app2:topic("in"))
    left2:join_asof(right2, { how = "left", on_merge = function(l, r)
      l.from_fn = r == nil
      return l
    end }):to_topic(app2:topic("out1"))
    got = produced(left2, decoded('{"a":1}'), true)
    assert.are.same({ false, '{"a":1,"from_fn":true}' }, got.out1)
  end)
end)

describe("the built-in merges with fresh sides", function()
  it("merge as when the sides are checked, and check a side that is not fresh", function()
    for _, how in ipairs({ "keep-left", "keep-right", "raise" }) do
      local fn = merge.new(how, "join_asof", "here")
      local left, right = decoded('{"id":1,"v":2}'), decoded('{"device":3,"site":"s"}')
      local checked = codec.json_encode(fn(left, right, false, false))
      assert.are.equal(checked, codec.json_encode(fn(left, right, false, false, true, true)), how)
      -- a key added to a side that is not said to be fresh is seen
      local changed = decoded('{"id":1,"v":2}')
      changed.extra = 9
      local out = fn(changed, right, false, false, false, true)
      assert.are.equal(9, out.extra, how)
    end
  end)
end)
