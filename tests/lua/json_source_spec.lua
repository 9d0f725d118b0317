-- Copying a decoded object's text to the output (qhost.runtime.json_in's
-- source, qhost.runtime.json_out): while a message is held, the object
-- decoded from it is written by copying its text when that text is what
-- the encoder would write. The output must always be the C encoder's text
-- (codec.json_encode): checked on random texts and random changes; the
-- copy must be made only from the held message's bytes, only while held.
local ffi = require("ffi")
local codec = require("qhost.codec")
local json_in = require("qhost.runtime.json_in")
local json_out = require("qhost.runtime.json_out")
local json_text = require("json_text")

local c_decode, slot_for, bytes = json_text.c_decode, json_text.slot_for, json_text.bytes

local function encoded(v, fresh)
  local address, len = json_out.encode(v, fresh)
  if address == nil then return nil, len end
  return ffi.string(ffi.cast("const char *", address), len)
end

-- The value of text decoded by the slot's decoder and held, its bytes, and
-- how many copies the encoder had made before.
local function held(slot, text)
  local buf = bytes(text)
  local v = json_in.try(slot, buf, #text)
  assert.is_not_nil(v, text)
  json_in.hold(v, buf, #text)
  return v, buf
end

local function copies(fn)
  local before = json_out.copied
  fn()
  return json_out.copied - before
end

describe("copying a held object's text to the output", function()
  after_each(function() json_in.release() end)

  it("copies an unchanged object, and one with keys added after its text", function()
    local slot = slot_for('{"id":1,"user":"u-1","price":1.5,"ok":true,"none":null}')
    local text = '{"id":7,"user":"user-0007 é/x","price":12.34,"ok":false,"none":null}'
    local v = held(slot, text)
    assert.are.equal(1, copies(function() assert.are.equal(text, encoded(v, true)) end))
    assert.are.equal(1, copies(function() assert.are.equal(text, encoded(v, false)) end))
    v.total = 1234
    local want = text:sub(1, -2) .. ',"total":1234}'
    assert.are.equal(want, codec.json_encode(v))
    -- (the first time by the general path, which learns the added key)
    assert.are.equal(want, encoded(v, false))
    assert.are.equal(1, copies(function() assert.are.equal(want, encoded(v, false)) end))
    v.extra, v.a = { 1, 2 }, "x"
    assert.are.equal(codec.json_encode(v), encoded(v, false))
  end)

  it("writes a changed object, a copy of it, and one not held as the encoder does", function()
    local text = '{"a":1,"b":"x","c":2.5}'
    local slot = slot_for(text)
    local v = held(slot, text)
    local same_value = { a = 1, b = "x", c = 2.5 }
    setmetatable(same_value, getmetatable(v))
    local n = copies(function()
      assert.are.equal(text, encoded(same_value, true))      -- equal, but not the held table
      v.b = "y"
      assert.are.equal('{"a":1,"b":"y","c":2.5}', encoded(v, false))
      v.b = "x"                                               -- back to the value decoded
      assert.are.equal(text, encoded(v, false))
      v.a = nil
      assert.are.equal('{"b":"x","c":2.5}', encoded(v, false))
      v.a = 1
      v.c = -0.0
      assert.are.equal(codec.json_encode(v), encoded(v, false))
    end)
    assert.are.equal(1, n)   -- only the value changed back
    setmetatable(v, nil)
    v.c = 2.5
    assert.are.equal(0, copies(function() assert.are.equal('{"a":1,"b":"x","c":2.5}', encoded(v, false)) end))
  end)

  it("copies only while the message is held, and only from its own bytes", function()
    local text = '{"a":1,"b":"xyz"}'
    local slot = slot_for(text)
    local v, buf = held(slot, text)
    json_in.release()
    ffi.copy(buf, '{"a":1,"b":"XYZ"}', #text)   -- the batch's memory, reused after the message
    assert.are.equal(0, copies(function() assert.are.equal(text, encoded(v, false)) end))
    -- the next message decoded is held: the table of the one before is not copied
    local w = held(slot, '{"a":2,"b":"q"}')
    assert.are.equal(0, copies(function() assert.are.equal(text, encoded(v, false)) end))
    assert.are.equal(1, copies(function() assert.are.equal('{"a":2,"b":"q"}', encoded(w, false)) end))
    -- decoded but not held (a message processed later, as joins do): not copied
    json_in.release()
    local buf2 = bytes('{"a":3,"b":"r"}')
    local u = json_in.try(slot, buf2, 15)
    json_in.hold(c_decode('{"a":3,"b":"r"}'), buf2, 15)   -- another table held
    assert.are.equal(0, copies(function() assert.are.equal('{"a":3,"b":"r"}', encoded(u, false)) end))
  end)

  it("does not copy a text the encoder writes otherwise, and writes it as the encoder does", function()
    local slot = slot_for('{"n":1,"s":"a"}')
    local others = { '{"n": 1,"s":"a"}', '{"n":1, "s":"a"}', '{"n":1.50,"s":"a"}', '{"n":5.0,"s":"a"}',
      '{"n":-0,"s":"a"}', '{"n":1e3,"s":"a"}', '{"n":0.00001,"s":"a"}', '{"n":1234567890123456,"s":"a"}',
      '{"n":0.1234567890123456,"s":"a"}' }
    for _, text in ipairs(others) do
      local v = held(slot, text)
      assert.are.equal(0, copies(function() assert.are.equal(codec.json_encode(v), encoded(v, false), text) end))
      json_in.release()
    end
  end)

  it("agrees with the C encoder on random texts and random changes", function()
    local rnd = math.random
    math.randomseed(20261204)
    local strings = { "", "a", "user-0042", "é", "日本", "\240\159\152\128", "x y", "a/b", "\127", "<>&'" }
    local numbers = { "0", "-0", "1", "-1", "0.5", "-0.0", "1e5", "12.34", "19.99", "1.50", "0.0001", "0.00001",
      "123456789012345", "1234567890123456", "-987.654321", "3.141592653589793", "0.1", "100", "-0.25" }
    local function random_value()
      local r = rnd(30)
      if r <= 14 then return numbers[rnd(#numbers)] end
      if r <= 26 then return '"' .. strings[rnd(#strings)] .. '"' end
      return ({ "true", "false", "null" })[rnd(3)]
    end
    local shapes = { { "id", "v" }, { "a", "b", "c", "d", "e", "f", "g", "h" }, { "k" } }
    local added = { "total", "zz", "aa" }
    local slot = json_in.slot()
    local taken, copied = 0, 0
    for i = 1, 20000 do
      local keys = shapes[math.floor(i / 50) % #shapes + 1]
      local parts = {}
      for j, k in ipairs(keys) do parts[j] = '"' .. k .. '"' .. (rnd(20) == 1 and ": " or ":") .. random_value() end
      local text = "{" .. table.concat(parts, ",") .. "}"
      local buf = bytes(text)
      local v = json_in.try(slot, buf, #text)
      if v == nil then
        json_in.learn(slot, (c_decode(text)))
      else
        taken = taken + 1
        json_in.hold(v, buf, #text)
        local change = rnd(8)
        if change == 1 then
          v[keys[rnd(#keys)]] = codec.json_decode(random_value())
        elseif change == 2 then
          v[keys[rnd(#keys)]] = nil
        elseif change <= 5 then
          v[added[1]] = rnd(1000) / 8   -- as a pipeline adding a field to every message
          if change == 5 then v[added[rnd(3)]] = "x" end
        end
        local before = json_out.copied
        local want = codec.json_encode(v)
        assert.are.equal(want, encoded(v, change > 5 and rnd(2) == 1), "text " .. i .. ": " .. text)
        copied = copied + json_out.copied - before
        json_in.release()
      end
    end
    -- a good share was taken, and of that a good share copied
    assert.is_true(taken > 10000, taken .. " of 20000 taken")
    assert.is_true(copied > 2000, copied .. " of " .. taken .. " copied")
  end)
end)
