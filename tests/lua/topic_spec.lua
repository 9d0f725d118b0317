local qhost = require("qhost")
local serializers = require("qhost.serializers")

describe("TopicConfig", function()
  it("defaults to one partition, replication factor one", function()
    local c = qhost.TopicConfig{}
    assert.are.equal(1, c.num_partitions)
    assert.are.equal(1, c.replication_factor)
    assert.are.same({}, c.extra_config)
  end)
  it("keeps the given values", function()
    local c = qhost.TopicConfig{ num_partitions = 4, replication_factor = 3,
                                 extra_config = { ["retention.ms"] = "1000" } }
    assert.are.equal(4, c.num_partitions)
    assert.are.equal(3, c.replication_factor)
    assert.are.equal("1000", c.extra_config["retention.ms"])
  end)
  it("rejects a non-integer partition count", function()
    assert.has_error(function() qhost.TopicConfig{ num_partitions = 0 } end,
      "TopicConfig: num_partitions must be a positive integer, got 0")
    assert.has_error(function() qhost.TopicConfig{ num_partitions = 1.5 } end)
  end)
end)

describe("app:topic", function()
  local app = qhost.Application{}
  it("has Quix's default serializers", function()
    local t = app:topic("orders")
    assert.are.equal("orders", t.name)
    assert.are.same({ value_deserializer = "json", key_deserializer = "bytes",
                      value_serializer = "json", key_serializer = "bytes" }, t.serializer_names)
    assert.are.equal(1, t:num_partitions())
  end)
  it("uses the TopicConfig's partitions", function()
    local t = app:topic("four", { config = qhost.TopicConfig{ num_partitions = 4 } })
    assert.are.equal(4, t:num_partitions())
  end)
  it("rejects unknown options and serializers", function()
    assert.has_error(function() app:topic("x", { partitions = 3 }) end,
      'app:topic("x"): unknown option "partitions" (valid: config, key_deserializer, key_serializer, '
      .. 'timestamp_extractor, value_deserializer, value_serializer)')
    assert.has_error(function() app:topic("x", { value_serializer = "yaml" }) end)
    assert.has_error(function() app:topic("", {}) end)
    assert.has_error(function() app:topic("x", { config = { num_partitions = 2 } }) end)
  end)
  it("serializes key and value with its serializers", function()
    local t = app:topic("s", { key_serializer = "string", value_serializer = "json" })
    local k, v = t:serialize("k1", { a = 1 })
    assert.are.equal("k1", k)
    assert.are.equal('{"a":1}', v)
    local k2, v2, err = t:serialize(5, { a = 1 })
    assert.is_nil(k2); assert.is_nil(v2)
    assert.are.equal("topic 's': cannot serialize key: string serializer expects a string, got number", err)
  end)
  it("writes a nil value as JSON null with json (as Quix writes None), a Kafka null (tombstone) otherwise", function()
    -- (an apply returning nil, then to_topic: a tombstone deleted the key of a compacted topic)
    local t = app:topic("nil-json", { key_serializer = "json", value_serializer = "json" })
    assert.are.same({ n = 2, nil, "null" }, table.pack(t:serialize(nil, nil)))
    local b = app:topic("nil-bytes", { value_serializer = "bytes" })
    assert.are.same({ n = 2, "k", nil }, table.pack(b:serialize("k", nil)))
  end)
  it("serializes for the run loop's produce as serialize does, a JSON table's text left in a buffer by address", function()
    local ffi = require("ffi")
    local function bytes(vb, vlen)
      if type(vb) == "number" then return ffi.string(ffi.cast("const char *", vb), vlen) end
      assert.are.equal(vb and #vb or 0, vlen)
      return vb
    end
    local j = app:topic("out-json", { key_serializer = "string", value_serializer = "json" })
    local s = app:topic("out-str", { value_serializer = "string" })
    local ordered = require("qhost.codec").json_decode('{"z":1,"a":[2,{"m":null}]}')
    local cases = { { j, "k", ordered }, { j, nil, { 1, 2 } }, { j, "k", 5 }, { j, "k", "text" }, { j, nil, nil },
      { s, nil, "plain" }, { s, nil, nil } }
    for _, c in ipairs(cases) do
      local kb, vb, err = c[1]:serialize(c[2], c[3])
      assert.is_nil(err)
      local kb2, vb2, vlen2, err2 = c[1]:serialize_out(c[2], c[3])
      assert.is_nil(err2)
      assert.are.equal(kb, kb2)
      assert.are.equal(vb, bytes(vb2, vlen2))
    end
    assert.are.equal("number", type(select(2, j:serialize_out(nil, ordered))))
    -- errors as serialize's
    for _, v in ipairs({ { f = print }, { [1] = 1, x = 2 } }) do
      local _, _, err = j:serialize(nil, v)
      local kb, vb, vlen, err2 = j:serialize_out(nil, v)
      assert.is_nil(kb); assert.is_nil(vb); assert.is_nil(vlen)
      assert.truthy(err:find("^topic 'out%-json': cannot serialize value: "), err)
      assert.are.equal(err, err2)
    end
    local _, _, _, kerr = s:serialize_out(5, "v")
    assert.are.equal("topic 'out-str': cannot serialize key: bytes serializer expects a string, got number", kerr)
  end)
end)

describe("serializers", function()
  it("round-trip json, string, bytes, int and double", function()
    local cases = {
      { "json", { a = 1, b = { 1, 2, 3 }, c = "x" } },
      { "string", "héllo" }, { "str", "" }, { "bytes", "\0\1\2" },
      { "int", 0 }, { "int", -1 }, { "integer", 2147483647 }, { "int", -2147483648 },
      { "double", 3.25 }, { "double", -1e300 },
    }
    for _, c in ipairs(cases) do
      local s = serializers.get(c[1], "test")
      local bytes = assert(s.encode(c[2]))
      assert.are.same(c[2], (s.decode(bytes)))
    end
  end)
  it("json writes a number exactly as the codec does, on its own path's edges too", function()
    -- plain numbers skip the call into C: the bytes must still be the codec's
    local codec = require("qhost.codec")
    local json = serializers.get("json", "t")
    local values = { 0, -0, 1, -1, 42, 7.5, -0.1, 1e13, 99999999999999, -99999999999999, 1e14, -1e14,
                     123456789012345, 2 ^ 53, 1e300, 5e-324, 1 / 0, -1 / 0, 0 / 0 }
    math.randomseed(11)
    for _ = 1, 2000 do values[#values + 1] = math.floor((math.random() - 0.5) * 10 ^ math.random(0, 17)) end
    for _, v in ipairs(values) do
      assert.are.equal(codec.json_encode(v), json.encode(v), "the text of " .. tostring(v))
    end
  end)
  it("packs int as 4 big-endian bytes and double as 8", function()
    assert.are.equal("\0\0\1\0", serializers.get("int", "t").encode(256))
    assert.are.equal("\255\255\255\255", serializers.get("int", "t").encode(-1))
    assert.are.equal("\63\240\0\0\0\0\0\0", serializers.get("double", "t").encode(1.0))
  end)
  it("reports wrong-size payloads", function()
    local v, err = serializers.get("int", "t").decode("abc")
    assert.is_nil(v)
    assert.truthy(err:find("4 bytes"))
    v, err = serializers.get("double", "t").decode("abc")
    assert.is_nil(v)
    assert.truthy(err:find("8 bytes"))
  end)
  it("reports invalid JSON with its position", function()
    local v, err = serializers.get("json", "t").decode('{"a":}')
    assert.is_nil(v)
    assert.truthy(err:find("byte"))
  end)
  it("reads a Kafka null as nil; json writes nil as null (Quix's JSONSerializer), bytes as a Kafka null", function()
    assert.is_nil(serializers.decode(serializers.get("json", "t"), nil))
    assert.are.equal("null", serializers.encode(serializers.get("json", "t"), nil))
    assert.is_nil(serializers.encode(serializers.get("bytes", "t"), nil))
  end)
  it("accepts a table of functions", function()
    local s = serializers.get({ serialize = function(v) return v .. "!" end,
                                deserialize = function(b) return b:sub(1, -2) end }, "t")
    assert.are.equal("a!", s.encode("a"))
    assert.are.equal("a", s.decode("a!"))
  end)
  it("never turns a failure into a null (a tombstone): every failure is an error naming topic and half", function()
    local app = qhost.Application{}
    local t = app:topic("ints", { key_serializer = "int", value_serializer = "int" })
    local cases = {
      { 1, 1.5, "value", "integer from %-2147483648 to 2147483647, got 1.5" },
      { 3e9, 1, "key", "got 3000000000" },
      { 1, 2147483648, "value", "got 2147483648" },
      { 1, "7", "value", "expects an integer, got string" },
      { {}, 1, "key", "expects an integer, got table" },
      { 1, 0 / 0, "value", "integer" },
    }
    for _, c in ipairs(cases) do
      local kb, vb, err = t:serialize(c[1], c[2])
      assert.is_nil(kb); assert.is_nil(vb)
      assert.truthy(err, "no error for " .. tostring(c[1]) .. ", " .. tostring(c[2]))
      assert.truthy(err:find("topic 'ints': cannot serialize " .. c[3], 1, true), err)
      assert.truthy(err:find(c[4]), err)
    end
    local d = app:topic("d", { value_serializer = "double" })
    local _, vb, err = d:serialize(nil, "1.5")
    assert.is_nil(vb)
    assert.are.equal("topic 'd': cannot serialize value: double serializer expects a number, got string", err)
  end)
  it("accepts int64 cdata within range for int and double", function()
    local s = serializers.get("int", "t")
    assert.are.equal("\0\0\1\0", s.encode(256LL))
    local none, err = serializers.encode(s, 4294967296LL)
    assert.is_nil(none)
    assert.truthy(err:find("got 4294967296", 1, true), err)
  end)
  it("reports a custom serializer that raises or returns nothing, through nil, err", function()
    local raising = serializers.get({ serialize = function() error("boom", 0) end,
                                      deserialize = function() error("bang", 0) end }, "t")
    local v, err = serializers.encode(raising, "x")
    assert.is_nil(v); assert.are.equal("boom", err)
    v, err = serializers.decode(raising, "x")
    assert.is_nil(v); assert.are.equal("bang", err)
    local silent = serializers.get({ serialize = function() end }, "t")
    v, err = serializers.encode(silent, "x")
    assert.is_nil(v); assert.are.equal("the serializer returned nothing", err)
    local numeric = serializers.get({ serialize = function() return 5 end }, "t")
    v, err = serializers.encode(numeric, "x")
    assert.is_nil(v); assert.truthy(err:find("returned a number"))
  end)
  it("raises on an unknown name", function()
    assert.has_error(function() serializers.get("xml", "topic 'x' value_serializer") end)
  end)
end)
