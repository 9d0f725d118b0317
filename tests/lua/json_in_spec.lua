-- The JSON decoder of known shapes (qhost.runtime.json_in), Lua code the
-- JIT compiles, must give exactly what the C decoder gives (the same
-- values, the same metatable) for what it takes, and take nothing the C
-- decoder would read differently or reject: checked on hand-picked texts
-- and on random objects with random damage.
local ffi = require("ffi")
local codec = require("qhost.codec")
local json_in = require("qhost.runtime.json_in")
local json_text = require("json_text")

local null = codec.null
local c_decode, slot_for = json_text.c_decode, json_text.slot_for

-- The fast path's result for text (nil: left to the C decoder), with the
-- text in memory of exactly its length.
local function fast(slot, text)
  return json_in.try(slot, json_text.bytes(text), #text)
end

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

  it("counts the keys without values a constructor needs for room", function()
    local room = json_in._keys_for_room
    assert.are.equal(0, room(8, 0))
    assert.are.equal(1, room(8, 1))    -- 9 keys: 16 nodes, 7 free
    assert.are.equal(1, room(8, 7))
    assert.are.equal(9, room(8, 8))    -- 17 keys: 32 nodes
    assert.are.equal(0, room(5, 3))    -- 8 nodes: 3 free
    assert.are.equal(4, room(5, 4))
    assert.are.equal(0, room(1, 1))    -- 2 nodes at least
  end)

  -- (before the random objects below, which fill the C decoder's cache of
  -- shapes: past it each object has a metatable of its own, and no decoder)
  it("makes the objects of a shape pipelines add keys to with room, the same objects to their users", function()
    local key_shape = require("qhost.runtime.key_shape")
    local json_out = require("qhost.runtime.json_out")
    local text = '{"a":1,"b":"x","c":2.5,"d":true,"e":null,"f":3,"g":"y","h":4}'
    local slot = slot_for(text)
    local exact = slot.decode
    assert.is_function(exact)
    assert.are.equal(0, slot.room)
    json_in.adapt(slot)
    assert.are.equal(exact, slot.decode)   -- nothing gained a key yet
    -- the encoder writes an object of the shape with a key added
    local v = fast(slot, text)
    local order = getmetatable(v).__qhost_keys
    v.total = 10
    local ptr, len = json_out.encode(v)
    assert.are.equal('{"a":1,"b":"x","c":2.5,"d":true,"e":null,"f":3,"g":"y","h":4,"total":10}',
      ffi.string(ffi.cast("const char *", ptr), len))
    assert.are.equal(1, key_shape.growth(order))
    json_in.adapt(slot)
    assert.are.equal(1, slot.room)
    assert.are_not.equal(exact, slot.decode)
    -- its objects are what the C decoder makes: the keys without values
    -- that make the room are seen by nothing
    local roomy = fast(slot, text)
    assert.is_true(same(roomy, (c_decode(text))))
    local keys = {}
    for k in pairs(roomy) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ "a", "b", "c", "d", "e", "f", "g", "h" }, keys)
    roomy.total = 11
    ptr, len = json_out.encode(roomy)
    assert.are.equal('{"a":1,"b":"x","c":2.5,"d":true,"e":null,"f":3,"g":"y","h":4,"total":11}',
      ffi.string(ffi.cast("const char *", ptr), len))
    -- the room is real: an object with room takes more memory (16 nodes
    -- instead of 8), and a key added to it none. (Each measured after a
    -- first run: the JIT's traces, made in the first, count as memory too.)
    local function kb_for(decode_n, add)
      local used
      for _ = 1, 2 do
        collectgarbage("collect")
        collectgarbage("stop")
        local keep = {}
        for i = 1, 1000 do keep[i] = false end
        local before = collectgarbage("count")
        for i = 1, 1000 do
          local o = decode_n()
          if add then o.total = i end
          keep[i] = o
        end
        used = collectgarbage("count") - before
        collectgarbage("restart")
      end
      return used
    end
    local exact_slot = { decode = exact, misses = 0 }   -- (a new slot for the shape gets room now)
    assert.are.equal(1, slot_for(text).room)
    local exact_made = kb_for(function() return fast(exact_slot, text) end, false)
    local roomy_made = kb_for(function() return fast(slot, text) end, false)
    local roomy_added = kb_for(function() return fast(slot, text) end, true)
    assert.is_true(roomy_made - exact_made > 150, roomy_made .. " KB against " .. exact_made)
    assert.is_true(math.abs(roomy_added - roomy_made) < 20, roomy_added .. " KB against " .. roomy_made)
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
