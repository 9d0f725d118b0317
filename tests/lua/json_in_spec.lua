-- The JSON decoder of known shapes (qhost.runtime.json_in), Lua code the
-- JIT compiles, must give exactly what the C decoder gives (the same
-- values, the same metatable) for what it takes, and take nothing the C
-- decoder would read differently or reject: checked on hand-picked texts
-- and on random objects with random damage.
local ffi = require("ffi")
local codec = require("qhost.codec")
local json_in = require("qhost.runtime.json_in")
local json_decode_at = require("qhost.runtime.json_at").json_decode_at

local null = codec.null

-- The C decoder's result for text.
local function c_decode(text)
  local buf = ffi.new("char[?]", #text + 1, text)
  return json_decode_at(tonumber(ffi.cast("uintptr_t", buf)), #text)
end

-- The fast path's result for text (nil: left to the C decoder), with the
-- text in memory of exactly its length (reading past it would be a bug
-- that ASan sees).
local function fast(slot, text)
  local buf = ffi.C.malloc(math.max(#text, 1))
  ffi.copy(buf, text, #text)
  local v = json_in.try(slot, buf, #text)
  ffi.C.free(buf)
  return v
end
pcall(ffi.cdef, "void *malloc(size_t); void free(void *);")

-- Whether a and b are the same JSON value: same types, numbers equal (the
-- sign of a zero too, NaN as NaN), tables with the same metatable and keys.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if a ~= a then return b ~= b end
    return a == b and 1 / a == 1 / b
  end
  if type(a) ~= "table" then return a == b end
  if getmetatable(a) ~= getmetatable(b) then return false end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- A slot that has learned the shape of text (two objects of it in a row).
local function slot_for(text)
  local slot = json_in.slot()
  for _ = 1, 2 do json_in.learn(slot, (c_decode(text))) end
  return slot
end

describe("json_in", function()
  it("reads objects of the learned shape as the C decoder does, with its metatable", function()
    local slot = slot_for('{"id":1,"name":"a","price":1.5,"ok":true,"none":null}')
    local texts = {
      '{"id":2,"name":"b","price":2.25,"ok":false,"none":null}',
      '{"id": -3, "name": "é ü", "price": 1e300, "ok": true, "none": null}',
      '{"id":-0,"name":"","price":-0.0,"ok":true,"none":false}',
      '{"id":1e400,"name":"x","price":12345678901234567890,"ok":null,"none":5e-324}',
      '{"id":0.1,"name":"\240\159\152\128","price":-1.5E-7,"ok":1,"none":"null"}',
    }
    for _, text in ipairs(texts) do
      local got = fast(slot, text)
      assert.is_not_nil(got, text)
      assert.is_true(same(c_decode(text), got), text)
    end
  end)

  it("leaves to the C decoder what it does not read the same way, or what is not JSON", function()
    local slot = slot_for('{"id":1,"v":2}')
    local texts = {
      '{"id":1,"v":[1]}', '{"id":1,"v":[]}', '{"id":1,"v":{}}', '{"id":1,"v":{"a":1}}', '{"id":1,"v":"a\\nb"}',
      '{"id":1,"v":"\\u00e9"}',
      '{"id":1,"v":9007199254740993}', '{"id":1,"v":NaN}', '{"id":1,"v":-Infinity}', '{"id":1}',
      '{"id":1,"v":2,"w":3}', '{"v":2,"id":1}', '{"id":1,"v":2} ', ' {"id":1,"v":2}', '{"id":1 ,"v":2}',
      '{"id":1,"v":2\n}', '{"id":1,\t"v":2}', '{"id":1,  "v":2}', '{"id":01,"v":2}', '{"id":1.,"v":2}',
      '{"id":1,"v":tru}', '{"id":1,"v":nul}', '{"id":1,"v":"\255"}', '{"id":1,"v":"a\1"}', '{"id":1,"v":2',
      '{"id":1,"v":"ab', '{"id":1,"v":', '{"id":1,"v"', '{"id":1,"v":2}}', '{"id":1,"v":2},', '{"id":1,"v":-}',
      '{"id":1,"v":"\237\160\128"}', '{"ID":1,"v":2}', '', '{', '[1,2]', '"text"', '5', 'null',
    }
    for _, text in ipairs(texts) do
      assert.is_nil(fast(slot, text), text)
    end
  end)

  it("agrees with the C decoder on random objects, whole and damaged", function()
    local rnd = math.random
    math.randomseed(20261202)
    local strings = { "", "a", "user-0042", "é", "日本", "\240\159\152\128", "x y", "a/b" }
    local escaped = { "a\\\"b", "tab\\t", "\\u00e9", "\\ud800", "\\/" }
    local numbers = { "0", "-0", "1", "-1", "0.5", "-0.0", "1e5", "1E-5", "2.5e+3", "123456789012345678",
      "9007199254740993", "1e400", "-1e400", "0.1", "3.141592653589793", "1.7976931348623157e308", "5e-324",
      "99999999999999999999999" }
    -- (mostly values it takes: a message with one it does not is left whole)
    local function random_value(depth)
      local r = rnd(40)
      if r <= 16 then return numbers[rnd(#numbers)] end
      if r <= 31 then return '"' .. strings[rnd(#strings)] .. '"' end
      if r <= 36 then return ({ "true", "false", "null" })[rnd(3)] end
      if r == 37 then return '"' .. escaped[rnd(#escaped)] .. '"' end
      if depth > 1 then return "1" end
      if r <= 38 then return "[" .. random_value(depth + 1) .. "]" end
      return '{"n":' .. random_value(depth + 1) .. "}"
    end
    local shapes = { { "id", "v" }, { "a", "b", "c", "d", "e", "f", "g", "h" }, { "k" } }
    -- runs of 50 messages of one shape, as a topic's
    local function random_text(i)
      local keys = shapes[math.floor(i / 50) % #shapes + 1]
      local parts = {}
      local sep = rnd(4) == 1 and ", " or ","
      local colon = rnd(4) == 1 and ": " or ":"
      for i, k in ipairs(keys) do parts[i] = '"' .. k .. '"' .. colon .. random_value(0) end
      local text = "{" .. table.concat(parts, sep) .. "}"
      local damage = rnd(10)
      if damage == 1 then
        text = text:sub(1, rnd(#text))
      elseif damage == 2 then
        local at = rnd(#text)
        text = text:sub(1, at - 1) .. string.char(rnd(0, 255)) .. text:sub(at + 1)
      end
      return text
    end
    local slot = json_in.slot()
    local taken = 0
    for i = 1, 20000 do
      local text = random_text(i)
      local want, err = c_decode(text)
      local got = fast(slot, text)
      if got ~= nil then
        taken = taken + 1
        assert.is_nil(err, text)
        assert.is_true(same(want, got), "text " .. i .. ": " .. text)
      else
        json_in.learn(slot, want)
      end
    end
    -- the fast path took a good share
    assert.is_true(taken > 5000, taken .. " of 20000 taken")
  end)

  it("gives up a shape whose objects it keeps leaving to the C decoder", function()
    local text = '{"id":1,"v":{"nested":true}}'
    local slot = slot_for(text)
    local tried = 0
    for _ = 1, 40 do
      if slot.decode then tried = tried + 1 end
      assert.is_nil(fast(slot, text))
      json_in.learn(slot, (c_decode(text)))
    end
    assert.are.equal(16, tried)
    -- another slot meeting the shape does not try it either
    assert.is_nil(slot_for(text).decode)
  end)

  it("makes no decoder for a shape it cannot match by bytes, nor for one seen once", function()
    assert.is_nil(json_in._source({ "a\"b" }))
    assert.is_nil(json_in._source({ "é" }))
    assert.is_nil(json_in._source({ "a", "a" }))
    assert.is_nil(json_in._source({}))
    local long = {}
    for i = 1, 33 do long[i] = "k" .. i end
    assert.is_nil(json_in._source(long))
    -- each object with a metatable of its own (what the C decoder does past
    -- its cache of shapes): never two in a row, so no decoder
    local slot = json_in.slot()
    for i = 1, 5 do json_in.learn(slot, setmetatable({ a = i }, { __qhost_keys = { "a" } })) end
    assert.is_nil(slot.decode)
    -- a JSON null or array value teaches nothing
    json_in.learn(slot, null)
    json_in.learn(slot, (c_decode("[1]")))
    assert.is_nil(slot.decode)
  end)
end)
