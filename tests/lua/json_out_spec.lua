-- The output encoder (qhost.runtime.json_out), Lua code the JIT compiles,
-- must write exactly what the C encoder (codec.json_encode) writes, and
-- hand it what it does not take: checked on hand-picked values and on
-- random ones. And key_shape's generated checks.
local ffi = require("ffi")
local codec = require("qhost.codec")
local json_out = require("qhost.runtime.json_out")
local key_shape = require("qhost.runtime.key_shape")

local null, array_mt = codec.null, codec.array_mt

-- json_out's result as (text) or (nil, err).
local function out_text(v)
  local address, len = json_out.encode(v)
  if address == nil then return nil, len end
  return ffi.string(ffi.cast("const char *", address), len)
end

-- Both encoders agree on v: the same text, or both fail with the same error.
local function assert_same(v, label)
  local want, want_err = codec.json_encode(v)
  local got, got_err = out_text(v)
  assert.are.equal(want, got, label)
  assert.are.equal(want_err, got_err, label)
end

-- Counts what went to the C encoder while fn runs.
local function handed_to_c(fn)
  local before = json_out.handed_to_c
  fn()
  return json_out.handed_to_c - before
end

describe("json_out", function()
  it("writes the common values itself, as the C encoder writes them", function()
    local decoded = codec.json_decode('{"id":7,"name":"Zoë \\"q\\"\\n","tags":["a","b"],"pos":{"x":1.5,"y":-0.25},'
      .. '"ok":true,"none":null,"big":1e300,"tiny":5e-324,"neg":-42}')
    local with_added = codec.json_decode('{"k":1,"m":2}')
    with_added.zeta, with_added.alpha, with_added.m = 3, { 1, 2 }, "changed"
    local with_removed = codec.json_decode('{"a":1,"b":2,"c":3}')
    with_removed.b = nil
    local values = {
      decoded, with_added, with_removed, codec.json_decode("[]"), codec.json_decode("{}"),
      { b = 1, a = 2, [""] = 3, ["\0x"] = 4, ["x\0"] = 5, ["é"] = 6, ["z"] = 7, ["Z"] = 8 },
      { 1, "two", { three = 3 }, false, null }, setmetatable({ 1, nil, 3, nil }, array_mt),
      setmetatable({}, array_mt), {}, { x = 0 / 0, y = 1 / 0, z = -1 / 0, w = 2 ^ 53, v = 2 ^ 63, u = 0.1 },
      "plain", 12, true, null, { ["key\n\"with\\escapes"] = "\1\31\127" },
      { lone = codec.json_decode('"\\ud800x"'), controls = string.rep("\1", 5000) },
    }
    local n = handed_to_c(function()
      for i, v in ipairs(values) do assert_same(v, "value " .. i) end
    end)
    assert.are.equal(0, n)
  end)

  it("gives the json serializer a plain table's text as a string, the C encoder's; nil for what it does not take",
    function()
    local serializers = require("qhost.serializers")
    local json = serializers.get("json")
    local values = {
      { n = 7 }, { b = { 2, 1 }, a = "x", c = { d = { e = true } } }, { 1, 2, 3 }, {},
      { z = 0.1, y = -0.0, x = 2 ^ 53 }, { ["é"] = "ü", [""] = null },
    }
    for i, v in ipairs(values) do
      local want = codec.json_encode(v)
      assert.are.equal(want, json_out.encode_string(v), "value " .. i)
      assert.are.equal(want, serializers.encode(json, v), "value " .. i)
    end
    -- (mixed keys, a cycle: the C encoder's to write or refuse)
    local cyclic = {}
    cyclic.self = cyclic
    for _, v in ipairs({ { 1, x = 2 }, cyclic, { [true] = 1 } }) do
      assert.is_nil(json_out.encode_string(v))
      local want, want_err = codec.json_encode(v)
      local got, got_err = serializers.encode(json, v)
      assert.are.equal(want, got)
      if want_err then assert.truthy(got_err and got_err:find(want_err, 1, true), got_err) end
    end
  end)

  it("writes objects whose decoded order gained or lost keys, as they change from message to message", function()
    local n = handed_to_c(function()
      for i = 1, 40 do
        local v = codec.json_decode(string.format('{"id":%d,"kind":"buy","qty":%d}', i, i % 7))
        v.total = i * 3                               -- the same added key, message after message
        if i > 10 then v.b, v.a = i, "x" end          -- then others
        if i > 20 then v.kind = nil end               -- then one gone
        if i > 30 then v["k" .. i] = i end            -- then a new one each time
        assert_same(v, "message " .. i)
      end
    end)
    assert.are.equal(0, n)
  end)

  it("writes plain tables whose keys change from message to message, each as the C encoder writes it", function()
    -- Each depth remembers the last plain object's keys and tries them on
    -- the next: a repeat, fewer or more keys, another set, keys whose joined
    -- text is another set's ("a\0b" against "a", "b"), arrays, nested
    -- objects of changing shapes, values it hands to the C encoder.
    local sequence = {
      { n = 1 }, { n = 2 }, { n = 3, m = 4 }, { m = 5 }, {}, { n = 6 }, { 1, 2 }, { n = 7 },
      { ["a\0b"] = 1 }, { a = 1, b = 2 }, { ["a\0b"] = 3 }, { a = 4, b = 5 },
      { p = { x = 1 } }, { p = { x = 2, y = 3 } }, { p = { y = 4 } }, { p = { 1, 2 } }, { p = { x = 5 } },
      { n = 8, [1] = 9 }, { n = 9 }, { n = null }, { n = "str" }, { n = { n = { n = 1 } } }, { n = 10 },
      { n = 11, f = print }, { n = 12 }, { n = print }, { n = 13 },
    }
    for round = 1, 3 do
      for i, v in ipairs(sequence) do assert_same(v, string.format("round %d, value %d", round, i)) end
    end
  end)

  it("hands the C encoder what it does not take, which writes it or reports the error with its path", function()
    local cycle = { a = 1 }
    cycle.self = cycle
    local deep = {}
    local t = deep
    for _ = 1, 100 do t.next = {}; t = t.next end
    local values = {
      { id = 123456789012345678LL }, { n = ffi.new("uint64_t", 18446744073709551615ULL) },
      { bad = "\255" }, { ["\255"] = 1 }, { f = print }, { 1, 2, x = 3 }, { [1] = 1, [3] = 3 }, { [1.5] = 1 },
      setmetatable({ 1, x = 2 }, array_mt), setmetatable({ [100] = 1 }, array_mt), cycle, deep,
      { ud = io.stdout }, setmetatable({ a = 1 }, { __metatable = "locked" }),
      setmetatable({ b = 1, a = 1 }, { __qhost_keys = { "a", "a", "b" } }),
    }
    local n = handed_to_c(function()
      for i, v in ipairs(values) do assert_same(v, "value " .. i) end
    end)
    assert.are.equal(#values, n)
  end)

  it("writes a 2 MB value, then a small one after it", function()
    local big = { s = string.rep("x", 2 * 1048576) }
    assert.are.equal(2 * 1048576 + 8, #out_text(big))
    local address, len = json_out.encode({ a = 1 })
    assert.are.equal('{"a":1}', ffi.string(ffi.cast("const char *", address), len))
  end)

  it("agrees with the C encoder on random values", function()
    math.randomseed(20261202)
    local rnd = math.random
    local shapes = {}
    for i = 1, 6 do
      local keys = {}
      for j = 1, rnd(1, 8) do keys[j] = "k" .. i .. "_" .. j end
      shapes[i] = keys
    end
    local function random_string()
      local b = {}
      for i = 1, rnd(0, 6) do
        local r = rnd(1, 10)
        b[i] = r <= 6 and string.char(rnd(97, 122)) or r == 7 and string.char(rnd(0, 31))
          or r == 8 and "é" or r == 9 and '"' or string.char(rnd(128, 255))
      end
      return table.concat(b)
    end
    local value
    local function random_table(depth)
      local r = rnd(1, 5)
      if r == 1 then   -- an array
        local t = {}
        for i = 1, rnd(0, 4) do t[i] = value(depth + 1) end
        return t
      elseif r == 2 then   -- a marked array, maybe with holes
        local t = setmetatable({}, array_mt)
        for i = 1, rnd(0, 4) do if rnd(1, 3) > 1 then t[i] = value(depth + 1) end end
        return t
      elseif r == 3 then   -- an object of random keys
        local t = {}
        for _ = 1, rnd(0, 4) do t[random_string()] = value(depth + 1) end
        if rnd(1, 20) == 1 then t[rnd(1, 3)] = 1 end
        return t
      end
      -- a decoded-like object of a known shape, sometimes changed since
      local keys = shapes[rnd(1, #shapes)]
      local t = setmetatable({}, { __qhost_keys = keys })
      for _, k in ipairs(keys) do t[k] = value(depth + 1) end
      if rnd(1, 4) == 1 then t[keys[rnd(1, #keys)]] = nil end
      if rnd(1, 4) == 1 then t[random_string()] = value(depth + 1) end
      return t
    end
    value = function(depth)
      local r = rnd(1, depth > 3 and 8 or 11)
      if r == 1 then return rnd(-1000, 1000) end
      if r == 2 then return (rnd() - 0.5) * 10 ^ rnd(-10, 30) end
      if r == 3 then return random_string() end
      if r == 4 then return rnd(1, 2) == 1 end
      if r == 5 then return null end
      if r == 6 then return ({ 0 / 0, 1 / 0, 2 ^ 53 + 2, -0.0, 1e21 })[rnd(1, 5)] end
      if r == 7 then return rnd(1, 10) == 1 and 12345678901234567LL or rnd(1, 1e9) end
      if r == 8 then return "plain" end
      return random_table(depth)
    end
    local fast = 0
    for i = 1, 3000 do
      local v = random_table(0)
      local before = json_out.handed_to_c
      assert_same(v, "random value " .. i)
      if json_out.handed_to_c == before then fast = fast + 1 end
    end
    -- most random values are ones the Lua path writes itself
    assert.is_true(fast > 1000, fast .. " of 3000 written by the Lua path")
  end)

  -- fresh: the caller vouches that the table holds exactly its order's keys
  -- (qhost.runtime.pipeline), so they are not checked.
  local function fresh_text(v)
    local address, len = json_out.encode(v, true)
    if address == nil then return nil, len end
    return ffi.string(ffi.cast("const char *", address), len)
  end

  it("writes a fresh object by its order, unchecked, as the C encoder writes it", function()
    local decoded = codec.json_decode('{"z":1,"a":{"y":[1,2],"b":null},"m":"é\\n"}')
    assert.are.equal(codec.json_encode(decoded), fresh_text(decoded))
    -- unchecked: a key added to a "fresh" table is not seen (which is why
    -- only tables no user code has had are passed as fresh)
    local changed = codec.json_decode('{"id":1,"v":2}')
    changed.extra = 3
    assert.are.equal('{"id":1,"v":2}', fresh_text(changed))
    assert.are.equal('{"id":1,"v":2,"extra":3}', out_text(changed))
    -- nested tables are checked as any value's
    local nested = codec.json_decode('{"in":{"p":1}}')
    nested["in"].q = 2
    assert.are.equal('{"in":{"p":1,"q":2}}', fresh_text(nested))
  end)

  it("hands a fresh object that lacks a key of its order to the C encoder, which writes what it holds", function()
    local v = codec.json_decode('{"a":1,"b":2,"c":3}')
    v.b = nil
    local n = handed_to_c(function() assert.are.equal('{"a":1,"c":3}', fresh_text(v)) end)
    assert.are.equal(1, n)
  end)

  it("writes other fresh values as any value: orders key_shape cannot check, arrays, plain tables", function()
    local repeated = setmetatable({ a = 1, b = 2 }, { __qhost_keys = { "a", "b", "a" } })
    local values = { repeated, setmetatable({}, { __qhost_keys = {} }), codec.json_decode("[1,2]"),
      { y = 1, x = 2 }, "text", 5, null, setmetatable({ 1, 2 }, array_mt) }
    for i, v in ipairs(values) do
      assert.are.equal(codec.json_encode(v), fresh_text(v), "value " .. i)
    end
  end)
end)

describe("key_shape.exact_check", function()
  it("tells whether a table holds exactly the keys of an order", function()
    local order = { "a", "b\n\"q\"", "\0z" }
    local check = key_shape.exact_check(order)
    assert.are.equal(check, key_shape.exact_check(order))
    assert.is_true(check({ a = 1, ["b\n\"q\""] = false, ["\0z"] = null }))
    assert.is_false(check({ a = 1, ["b\n\"q\""] = 2 }))
    assert.is_false(check({ a = 1, ["b\n\"q\""] = 2, ["\0z"] = 3, d = 4 }))
    assert.is_false(check({ a = 1, ["b\n\"q\""] = 2, ["\0z"] = 3, [1] = 4 }))
    assert.is_false(check({}))
  end)

  it("takes no order it cannot check that way", function()
    local long = {}
    for i = 1, 33 do long[i] = "k" .. i end
    assert.is_nil(key_shape.exact_check({}))
    assert.is_nil(key_shape.exact_check({ "a", "b", "a" }))
    assert.is_nil(key_shape.exact_check({ "a", 1 }))
    assert.is_nil(key_shape.exact_check(long))
    local most = { unpack(long, 1, 32) }
    assert.is_true(key_shape.exact_check(most)(codec.json_decode('{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,'
      .. '"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,'
      .. '"k18":18,"k19":19,"k20":20,"k21":21,"k22":22,"k23":23,"k24":24,"k25":25,"k26":26,"k27":27,'
      .. '"k28":28,"k29":29,"k30":30,"k31":31,"k32":32}')))
  end)
end)
