-- JSON as pipelines see it: qhost.json (and the qhost.codec module behind
-- it), with the number rules of host/codec.h: int64 cdata beyond 2^53,
-- NaN/Infinity as Python writes them, shortest doubles, null.
local ffi = require("ffi")
local codec = require("qhost.codec")

local encode, decode = codec.json_encode, codec.json_decode

describe("qhost.json", function()
  it("is the codec's JSON functions and null", function()
    local json = require("qhost").json
    assert.are.equal(codec.json_encode, json.encode)
    assert.are.equal(codec.json_encode_pretty, json.encode_pretty)
    assert.are.equal(codec.json_decode, json.decode)
    assert.are.equal(codec.null, json.null)
  end)
end)

describe("JSON integers", function()
  it("up to 2^53 are Lua numbers", function()
    assert.are.equal("number", type(decode("9007199254740992")))
    assert.are.equal(-2 ^ 53, decode("-9007199254740992"))
    assert.are.equal("9007199254740992", encode(2 ^ 53))
  end)

  it("beyond 2^53 and within int64 are int64_t cdata that round-trip exactly", function()
    local v = decode("123456789012345678")
    assert.are.equal("cdata", type(v))
    assert.is_true(ffi.istype("int64_t", v))
    assert.is_true(v == 123456789012345678LL)
    assert.is_true(v + 1 == 123456789012345679LL)
    assert.are.equal("123456789012345678", encode(v))
    local doc = '{"id":-9223372036854775808,"max":9223372036854775807,"ts":1700000000123456789}'
    assert.are.equal(doc, encode(decode(doc)))
  end)

  it("beyond int64 are doubles, as before", function()
    local v = decode("9223372036854775808")
    assert.are.equal("number", type(v))
    assert.are.equal("9.223372036854776e+18", encode(v))
  end)

  it("with a '.' or an exponent stay doubles", function()
    assert.are.equal("number", type(decode("123456789012345678.0")))
    assert.are.equal("number", type(decode("1234567890123456789e0")))
    assert.are.equal("1.2345678901234568e+17", encode(decode("123456789012345678.0")))
  end)

  it("come from int64_t and uint64_t cdata a pipeline makes; other cdata are an error", function()
    assert.are.equal('{"n":18446744073709551615}', encode({ n = 18446744073709551615ULL }))
    assert.are.equal("[-5]", encode({ ffi.new("int64_t", -5) }))
    local s, err = encode({ p = ffi.new("int32_t", 1) })
    assert.is_nil(s)
    assert.are.equal("cannot encode cdata at value.p", err)
  end)

  it("are read in place by the run loop's json_decode_at too", function()
    local json_decode_at = require("qhost.runtime.json_at").json_decode_at
    local text = '[9007199254740993]'
    local buf = ffi.new("char[?]", #text)
    ffi.copy(buf, text, #text)
    local v = json_decode_at(tonumber(ffi.cast("uintptr_t", buf)), #text)
    assert.is_true(v[1] == 9007199254740993LL)
    -- it reads whatever memory it is given: not part of the public module
    assert.is_nil(codec.json_decode_at)
  end)
end)

describe("JSON NaN and infinities", function()
  it("decode as Python's json.loads reads them", function()
    local v = decode("[NaN,Infinity,-Infinity]")
    assert.is_true(v[1] ~= v[1])
    assert.are.equal(math.huge, v[2])
    assert.are.equal(-math.huge, v[3])
  end)

  it("encode as Python's json.dumps writes them", function()
    assert.are.equal("[NaN,Infinity,-Infinity]", encode({ 0 / 0, math.huge, -math.huge }))
    assert.are.equal('{\n  "x": NaN\n}', codec.json_encode_pretty({ x = 0 / 0 }))
  end)

  it("only in Python's spelling", function()
    for _, bad in ipairs({ "nan", "Inf", "-NaN", "infinity", "+Infinity" }) do
      local v, err = decode(bad)
      assert.is_nil(v, bad)
      assert.truthy(err:find("^invalid JSON at byte"), err)
    end
  end)
end)

describe("JSON doubles", function()
  it("print in the shortest form that reads back, laid out as Python's repr", function()
    local cases = {
      { 5e-324, "5e-324" }, { 0.1, "0.1" }, { 0.1 + 0.2, "0.30000000000000004" }, { 1e16, "1e+16" },
      { 1.5e-7, "1.5e-07" }, { 123456789.123, "123456789.123" }, { 1 / 3, "0.3333333333333333" },
      { 2 ^ 53 + 2, "9007199254740994.0" }, { 1.7976931348623157e308, "1.7976931348623157e+308" },
      { 3.0, "3" }, { -0.0, "0" },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], encode(c[1]))
      assert.are.equal(c[1], decode(c[2]))
    end
  end)

  it("round-trip exactly", function()
    math.randomseed(42)
    for _ = 1, 5000 do
      local x = (math.random() - 0.5) * 10 ^ math.random(-320, 300)
      assert.are.equal(x, decode(encode(x)))
    end
  end)
end)

describe("JSON null", function()
  it("decodes to codec.null and encodes from it and from nil", function()
    local v = decode('{"a":null}')
    assert.are.equal(codec.null, v.a)
    assert.are.equal('{"a":null}', encode(v))
    assert.are.equal("null", encode(nil))
    assert.are.equal("[1,null,3]", encode(setmetatable({ 1, nil, 3 }, codec.array_mt)))
  end)
end)

describe("JSON errors", function()
  it("come back as nil, err with a byte position", function()
    local v, err = decode('{"a":1,}')
    assert.is_nil(v)
    assert.are.equal("invalid JSON at byte 8: expected a string key", err)
  end)

  it("raised in the middle of a decode (a __gc that throws) do not spoil the next calls", function()
    local big = "[" .. string.rep('{"a":"b","c":[1]},', 20000) .. "1]"
    collectgarbage("setpause", 10)
    collectgarbage("setstepmul", 1000)
    collectgarbage()
    do
      local p = newproxy(true)
      getmetatable(p).__gc = function() error("boom from __gc", 0) end
    end
    local ok, err = pcall(decode, big)
    collectgarbage("setpause", 200)
    collectgarbage("setstepmul", 200)
    assert.is_false(ok)
    assert.are.equal("boom from __gc", err)
    -- the codec's shared scratch (and key-order cache) is in use again
    assert.are.equal(getmetatable(decode('{"q":1}')), getmetatable(decode('{"q":2}')))
    assert.are.equal(big, encode(decode(big)))
  end)
end)
