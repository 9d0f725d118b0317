-- Joins (qhost.joins, Quix Streams 3.28's join_asof and join_interval):
-- the timestamped store they keep their sides in, against a model of
-- Quix's TimestampedPartitionTransaction on random operations (in memory
-- and on RocksDB, with checkpoints and lost caches); the merges (every
-- on_merge); and both joins through sdf:test with Quix's own test cases
-- (tests/test_quixstreams/test_dataframe/test_joins/), every `how`.
local qhost = require("qhost")
local codec = require("qhost.codec")
local merge = require("qhost.joins.merge")
local timestamped = require("qhost.runtime.state.timestamped")
local windowed = require("qhost.runtime.state.windowed")
local store_partition = require("qhost.runtime.state.partition")

local json = qhost.json
local null = json.null

local function enc(v) return (json.encode(v)) end

-- Encodes each value of a list (nil as "nil").
local function encs(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v == nil and "nil" or enc(v) end
  return out
end

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/qhost-joins.XXXXXX")
  local dir = p:read("*l")
  p:close()
  return dir
end

-- The model: Quix's timestamped transaction as plainly as it reads -------------

local Model = {}
Model.__index = Model

local function new_model(grace, keep_duplicates)
  return setmetatable({ grace = grace, dup = keep_duplicates, data = {}, min = {}, updated = {}, counter = -1 }, Model)
end

function Model:set(prefix, ts, value)
  local list = self.data[prefix] or {}
  self.data[prefix] = list
  local c = 0
  if self.dup then self.counter = self.counter + 1; c = self.counter end
  local replaced = false
  for _, e in ipairs(list) do
    if e.ts == ts and e.c == c then e.v = enc(value); replaced = true end
  end
  if not replaced then list[#list + 1] = { ts = ts, c = c, v = enc(value) } end
  table.sort(list, function(a, b) return a.ts < b.ts or (a.ts == b.ts and a.c < b.c) end)
  local lower = math.max(ts - self.grace, 0)
  if lower > (self.min[prefix] or 0) then self.min[prefix] = lower end
  self.updated[prefix] = true
end

function Model:latest(prefix, ts)
  local min = self.min[prefix] or 0
  if ts + 1 <= min then return nil end
  local best
  for _, e in ipairs(self.data[prefix] or {}) do
    if e.ts >= min and e.ts <= ts then best = e end
  end
  return best and best.v or nil
end

function Model:interval(prefix, s, e)
  if s < 0 then s = 0 end
  local out = {}
  if s > e then return out end
  for _, x in ipairs(self.data[prefix] or {}) do
    if x.ts >= s and x.ts < e then out[#out + 1] = x.v end
  end
  return out
end

function Model:checkpoint()
  for prefix in pairs(self.updated) do
    local keep = {}
    for _, e in ipairs(self.data[prefix]) do
      if e.ts >= (self.min[prefix] or 0) then keep[#keep + 1] = e end
    end
    self.data[prefix] = keep
  end
  self.updated = {}
end

-- Random operations on a transaction and the model, compared at every read.
-- Prefixes include ones that start like another ("a" and "a|" + 8 bytes).
local PREFIXES = { "a", "b", "ab", "a|" .. string.rep("\0", 7) .. "\5" }

local function exercise(part, seed, grace, dup, steps)
  math.randomseed(seed)
  local opts = { grace_ms = grace, keep_duplicates = dup }
  local tx = timestamped.new(part, opts)
  local model = new_model(grace, dup)
  local reads, partial = 0, 0
  for step = 1, steps do
    local prefix = PREFIXES[math.random(#PREFIXES)]
    local r = math.random()
    -- timestamps mostly moving on, sometimes back (late values)
    local ts = math.floor(step / 2) + math.random(0, 40) - (math.random() < 0.2 and math.random(0, 150) or 0)
    if ts < 0 then ts = 0 end
    if r < 0.45 then
      local value = { n = step, p = prefix:sub(1, 2) }
      if math.random() < 0.1 then value = null end
      tx:set_for_timestamp(prefix, ts, value)
      model:set(prefix, ts, value)
    elseif r < 0.7 then
      local got = tx:get_latest(prefix, ts)
      assert.are.equal(model:latest(prefix, ts), got ~= nil and enc(got) or nil,
        string.format("step %d: get_latest(%q, %d)", step, prefix, ts))
      reads = reads + 1
    elseif r < 0.93 then
      local s = ts - math.random(0, 60)
      local e = ts + math.random(-5, 30)
      assert.are.same(model:interval(prefix, s, e), encs(tx:get_interval(prefix, s, e)),
        string.format("step %d: get_interval(%q, %d, %d)", step, prefix, s, e))
      reads = reads + 1
      -- (the record holds only a key's newest values: older ones come from the database)
      if (tx:_record_info(prefix) or 0) > 0 then partial = partial + 1 end
    else
      -- a checkpoint; sometimes the cache is lost too (a new transaction)
      tx:changes()
      tx:flush(step)
      model:checkpoint()
      if math.random() < 0.4 then tx = timestamped.new(part, opts) end
    end
  end
  return reads, partial
end

describe("join store (timestamped)", function()
  it("matches Quix's transaction on random operations, in memory, with and without duplicates", function()
    for seed = 1, 12 do
      local reads = exercise(windowed.memory_partition(), seed, 25 + seed * 7, seed % 2 == 0, 1500)
      assert.is_true(reads > 500)
    end
  end)

  it("matches it when keys hold more values than a record loads at first", function()
    local partial = 0
    for seed = 31, 36 do
      local _, p = exercise(windowed.memory_partition(), seed, 100000, seed % 2 == 0, 3000)
      partial = partial + p
    end
    assert.is_true(partial > 100, "the older values were read from the database only " .. partial .. " times")
  end)

  it("matches it on RocksDB, where a key's older values stay in the database until asked for", function()
    local dir = tmpdir()
    for seed = 20, 23 do
      local part = store_partition.open(dir .. "/p" .. seed)
      exercise(part, seed, seed < 22 and 120 or 100000, seed % 2 == 1, 2500)
      part:close()
    end
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("get_latest: the latest value at or before the timestamp, from the key's latest minus grace on", function()
    -- Quix's test_grace_ms
    local tx = timestamped.new(windowed.memory_partition(), { grace_ms = 10, keep_duplicates = false })
    tx:set_for_timestamp("key", 15, { right = 1 })   -- min eligible: 5
    tx:set_for_timestamp("key", 4, { right = 3 })    -- stored, but below the min
    tx:set_for_timestamp("key", 5, { right = 2 })
    assert.is_nil(tx:get_latest("key", 4))
    assert.are.equal('{"right":2}', enc(tx:get_latest("key", 5)))
    assert.are.equal('{"right":2}', enc(tx:get_latest("key", 14)))
    assert.are.equal('{"right":1}', enc(tx:get_latest("key", 1e12)))
    assert.is_nil(tx:get_latest("other", 15))
    -- without keep_duplicates a value replaces the one of its timestamp
    tx:set_for_timestamp("key", 15, { right = 9 })
    assert.are.equal('{"right":9}', enc(tx:get_latest("key", 15)))
  end)

  it("get_interval: values below the minimum stay until the checkpoint expires them (Quix's order)", function()
    local part = windowed.memory_partition()
    local tx = timestamped.new(part, { grace_ms = 10, keep_duplicates = true })
    tx:set_for_timestamp("k", 3, "a")
    tx:set_for_timestamp("k", 3, "b")      -- kept: a duplicate timestamp
    tx:set_for_timestamp("k", 20, "c")     -- min eligible 10
    assert.are.same({ '"a"', '"b"', '"c"' }, encs(tx:get_interval("k", 0, 21)))
    assert.are.same({ '"a"', '"b"' }, encs(tx:get_interval("k", -5, 4)))
    assert.are.same({}, encs(tx:get_interval("k", 5, 3)))
    local changes = tx:changes()
    local text = {}
    for i, c in ipairs(changes) do text[i] = c[1]:sub(1, 1) .. "=" .. tostring(c[2]) end
    -- the expired values never reach the changelog; the key's min and the counter do
    assert.are.same({ 'J="c"', "M=10", "C=2" }, text)
    tx:flush(0)
    assert.are.same({ '"c"' }, encs(tx:get_interval("k", 0, 21)))
    -- a new interval over the database reads the same
    local tx2 = timestamped.new(part, { grace_ms = 10, keep_duplicates = true })
    assert.are.same({ '"c"' }, encs(tx2:get_interval("k", 0, 100)))
    tx2:set_for_timestamp("k", 21, "d")
    assert.are.equal("3", select(2, next(tx2:changes()))[2] == nil and "?" or codec.json_encode(tx2.counter))
  end)

  it("keeps a value as it was when set, and refuses a negative timestamp", function()
    local tx = timestamped.new(windowed.memory_partition(), { grace_ms = 10, keep_duplicates = false })
    local v = { x = 1 }
    tx:set_for_timestamp("k", 1, v)
    v.x = 2
    assert.are.equal('{"x":1}', enc(tx:get_latest("k", 1)))
    local ok, err = pcall(tx.set_for_timestamp, tx, "k", -1, v)
    assert.is_false(ok)
    assert.truthy(err:find("cannot store a value at timestamp -1", 1, true), err)
  end)
end)

describe("join merges (on_merge)", function()
  local function m(how, l, r, copy_l, copy_r)
    return merge.new(how, "join_asof", "app.lua:1")(l, r, copy_l, copy_r)
  end
  local left = json.decode('{"A":1,"B":"left"}')
  local right = json.decode('{"B":"right","C":2}')

  it("keep-left: the right's keys first, the left's values win", function()
    assert.are.equal('{"B":"left","C":2,"A":1}', enc(m("keep-left", left, right)))
    assert.are.equal('{"A":1,"B":"left"}', enc(m("keep-left", left, nil)))
    assert.are.equal('{"A":1,"B":"left"}', enc(m("keep-left", left, null)))
  end)

  it("keep-right: the left's keys first, the right's values win", function()
    assert.are.equal('{"A":1,"B":"right","C":2}', enc(m("keep-right", left, right)))
    assert.are.equal('{"B":"right","C":2}', enc(m("keep-right", nil, right)))
  end)

  it("raise: both sides' keys, and an error naming the overlapping columns", function()
    assert.are.equal('{"A":1,"C":2}', enc(m("raise", json.decode('{"A":1}'), json.decode('{"C":2}'))))
    local ok, err = pcall(m, "raise", json.decode('{"A":1,"B":1,"C":1}'), json.decode('{"C":2,"B":2}'))
    assert.is_false(ok)
    assert.truthy(err:find("join_asof (app.lua:1): overlapping columns: B, C.", 1, true), err)
  end)

  it("a function gets both sides (nil for a missing one) and returns the value", function()
    local f = function(l, r) return { l = l, r = r or "none" } end
    assert.are.equal('{"l":2,"r":"none"}', enc(m(f, 2, nil)))
    -- a stored side is a copy: changing it changes nothing stored
    local stored = { n = { 1 } }
    local g = function(_, r) r.n[1] = 99 return r end
    m(g, 1, stored, false, true)
    assert.are.equal(1, stored.n[1])
  end)

  it("the built-in ones refuse what is not an object, as Python's {**x} does", function()
    for _, v in ipairs({ 5, "s", json.decode("[1,2]"), true }) do
      local ok, err = pcall(m, "keep-left", { a = 1 }, v)
      assert.is_false(ok)
      assert.truthy(err:find('on_merge "keep-left" merges objects, but the right value is', 1, true), err)
    end
  end)

  it("copies the tables of a stored side, so outputs share nothing with the store", function()
    local stored = json.decode('{"meta":{"site":"x"}}')
    local out = m("keep-left", { a = 1 }, stored, false, true)
    out.meta.site = "changed"
    assert.are.equal("x", stored.meta.site)
  end)

  it("tests values as Python's bool does (what join_asof takes for a match)", function()
    for _, v in ipairs({ false, 0, "", {}, null, json.decode("[]"), json.decode("{}") }) do
      assert.is_false(merge.truthy(v), enc(v))
    end
    assert.is_false(merge.truthy(nil))
    for _, v in ipairs({ true, 1, -0.5, "x", { 1 }, { a = false }, 0 / 0 }) do
      assert.is_true(merge.truthy(v))
    end
  end)
end)

-- sdf:test through a join ------------------------------------------------------------

local function new_join(kind, opts)
  local app = qhost.Application{}
  local left = app:dataframe(app:topic("left"))
  local right = app:dataframe(app:topic("right"))
  local joined = left[kind](left, right, opts)
  local sides = { left = left.topic, right = right.topic }
  local function publish(side, value, ts, key, headers)
    local out = joined:test(value, { key = key or "key", timestamp = ts, topic = sides[side], headers = headers,
      metadata = true })
    local list = {}
    for i, o in ipairs(out) do list[i] = { enc(o.value), o.key, o.timestamp, o.headers and enc(o.headers) } end
    return list
  end
  return publish, joined, left, right, app
end

describe("join_asof", function()
  -- Quix's test_how
  local HOW = {
    { "inner", { right = 2 }, { left = 1 }, { { '{"left":1,"right":2}', "key", 2 } } },
    { "inner", nil, { left = 1 }, {} },
    { "inner", {}, { left = 1 }, {} },
    { "left", { right = 2 }, { left = 1 }, { { '{"left":1,"right":2}', "key", 2 } } },
    { "left", nil, { left = 1 }, { { '{"left":1}', "key", 2 } } },
    { "left", {}, { left = 1 }, { { '{"left":1}', "key", 2 } } },
  }
  for i, case in ipairs(HOW) do
    it(string.format("how = %s (case %d)", case[1], i), function()
      local publish = new_join("join_asof", { how = case[1] })
      assert.are.same({}, publish("right", case[2], 1))
      assert.are.same(case[4], publish("left", case[3], 2))
    end)
  end

  -- Quix's test_on_merge
  local MERGE = {
    { "keep-left", nil, '{"A":1}', '{"A":1}' },
    { "keep-left", '{"B":"right","C":2}', '{"A":1,"B":"left"}', '{"B":"left","C":2,"A":1}' },
    { "keep-right", nil, '{"A":1}', '{"A":1}' },
    { "keep-right", '{"B":"right","C":2}', '{"A":1,"B":"left"}', '{"A":1,"B":"right","C":2}' },
    { "raise", nil, '{"A":1}', '{"A":1}' },
    { "raise", '{"B":2}', '{"A":1}', '{"A":1,"B":2}' },
    { "raise", '{"B":"right B","C":"right C"}', '{"A":1,"B":"left B","C":"left C"}', "overlapping columns: B, C." },
  }
  for i, case in ipairs(MERGE) do
    it(string.format("on_merge = %s (case %d)", case[1], i), function()
      local publish = new_join("join_asof", { how = "left", on_merge = case[1] })
      publish("right", case[2] and json.decode(case[2]), 1)
      if case[4]:find("^overlapping") then
        local ok, err = pcall(publish, "left", json.decode(case[3]), 2)
        assert.is_false(ok)
        assert.truthy(err:find(case[4], 1, true), err)
      else
        assert.are.same({ { case[4], "key", 2 } }, publish("left", json.decode(case[3]), 2))
      end
    end)
  end

  it("on_merge as a function merges what is not an object", function()
    local publish = new_join("join_asof", { on_merge = function(l, r) return { left = l, right = r } end })
    publish("right", 1, 1)
    assert.are.same({ { '{"left":2,"right":1}', "key", 2 } }, publish("left", 2, 2))
  end)

  it("grace_ms: the right values from the key's latest timestamp minus grace_ms on (Quix's test_grace_ms)", function()
    local publish = new_join("join_asof", { grace_ms = 10 })
    publish("right", { right = 1 }, 15)
    publish("right", { right = 3 }, 4)
    publish("right", { right = 2 }, 5)
    assert.are.same({}, publish("left", { left = 4 }, 4))
    assert.are.same({ { '{"left":4,"right":2}', "key", 5 } }, publish("left", { left = 4 }, 5))
  end)

  it("matches by key, keeps the left's key, timestamp and headers, and emits nothing for right messages", function()
    local publish, _, _, right = new_join("join_asof", { on_merge = "keep-right" })
    assert.are.same({}, publish("right", { r = "a" }, 10, "A"))
    -- the right dataframe goes on after the store (in place, as Quix's update)
    local seen = {}
    right:update(function(v) seen[#seen + 1] = v.r end)
    assert.are.same({ { '{"r":"b"}', "B", 10 } }, publish("right", { r = "b" }, 10, "B"))
    assert.are.same({ "b" }, seen)
    assert.are.same({ { '{"l":1,"r":"b"}', "B", 20, '[["h","v"]]' } },
      publish("left", { l = 1 }, 20, "B", { { "h", "v" } }))
    assert.are.same({}, publish("left", { l = 1 }, 20, "C"))
    assert.are.same({}, publish("left", { l = 1 }, 9, "A"))
  end)

  it("refuses a second join on the same right side without a name, and the same topic on both sides", function()
    local app = qhost.Application{}
    local a, b, c = app:dataframe(app:topic("a")), app:dataframe(app:topic("b")), app:dataframe(app:topic("c"))
    a:join_asof(b)
    assert.has_error(function() a:join_asof(b) end)
    assert.has_error(function() c:join_asof(b) end)
    assert.has_no.errors(function() c:join_asof(b, { name = "other" }) end)
    assert.has_error(function() a:join_asof(a) end)
    assert.has_error(function() a:join_asof(b, { how = "right" }) end)
    assert.has_error(function() a:join_asof(b, { how = "outer" }) end)
  end)
end)

describe("join_interval", function()
  -- Quix's test_join_interval cases: { options, { side, timestamp, value, expected outputs } ... }
  local function M(side, ts, value, expected) return { side, ts, value, expected or {} } end
  local CASES = {
    { "backward: a right value 3 ms back is in", { backward_ms = 3 },
      { M("right", 7, { right = 1 }), M("left", 10, { left = 2 }, { '{"left":2,"right":1}' }) } },
    { "backward: 4 ms back is out", { backward_ms = 3 }, { M("right", 6, {}), M("left", 10, {}) } },
    { "forward: a left value 3 ms back is in", { forward_ms = 3 },
      { M("left", 7, { left = 1 }), M("right", 10, { right = 2 }, { '{"left":1,"right":2}' }) } },
    { "forward: 4 ms back is out", { forward_ms = 3 }, { M("left", 6, {}), M("right", 10, {}) } },
    { "left join with forward", { how = "left", forward_ms = 3 },
      { M("left", 7, { left = 1 }, { '{"left":1}' }), M("right", 10, { right = 2 }, { '{"left":1,"right":2}' }) } },
    { "both ways, several values per timestamp", { backward_ms = 3, forward_ms = 3 },
      { M("right", 6, { right = 6 }), M("right", 7, { right = 7 }), M("right", 8, { right = 81 }),
        M("right", 8, { right = 82 }), M("right", 10, { right = 10 }),
        M("left", 10, { left = 10 }, { '{"left":10,"right":7}', '{"left":10,"right":81}', '{"left":10,"right":82}',
          '{"left":10,"right":10}' }),
        M("right", 11, { right = 111 }, { '{"left":10,"right":111}' }),
        M("right", 11, { right = 112 }, { '{"left":10,"right":112}' }) } },
    { "an interval of 0: the same timestamp only", {},
      { M("right", 7, { right = 1 }), M("left", 6, { left = 2 }), M("left", 8, { left = 3 }),
        M("left", 7, { left = 4 }, { '{"left":4,"right":1}' }),
        M("right", 7, { right = 5 }, { '{"left":4,"right":5}' }),
        M("left", 7, { left = 6 }, { '{"left":6,"right":1}', '{"left":6,"right":5}' }) } },
    { "keep-left", { on_merge = "keep-left" },
      { M("left", 7, { a = 1, b = 2 }), M("right", 7, { a = 1, b = 3 }, { '{"a":1,"b":2}' }) } },
    { "keep-right", { on_merge = "keep-right" },
      { M("left", 7, { a = 1, b = 2 }), M("right", 7, { a = 1, b = 3 }, { '{"a":1,"b":3}' }) } },
    { "a merge function", { on_merge = function(l, r) return l + r end },
      { M("right", 7, 1), M("left", 7, 2, { "3" }) } },
    { "right join", { how = "right" },
      { M("left", 6, { left = 1 }), M("right", 7, { right = 2 }, { '{"right":2}' }),
        M("left", 7, { left = 3 }, { '{"left":3,"right":2}' }) } },
    { "outer join", { how = "outer" },
      { M("left", 6, { left = 1 }, { '{"left":1}' }), M("right", 7, { right = 2 }, { '{"right":2}' }),
        M("left", 7, { left = 3 }, { '{"left":3,"right":2}' }) } },
  }
  for _, case in ipairs(CASES) do
    it(case[1], function()
      local publish = new_join("join_interval", case[2])
      for i, msg in ipairs(case[3]) do
        local got = publish(msg[1], msg[3], msg[2], "key", { { "a", "b" } })
        local want = {}
        -- the timestamp of the message, its key, and no headers (Quix drops them)
        for j, v in ipairs(msg[4]) do want[j] = { v, "key", msg[2], "[]" } end
        assert.are.same(want, got, case[1] .. ", message " .. i)
      end
    end)
  end

  it("refuses backward_ms beyond grace_ms, an unknown how, and a second join without a name", function()
    local app = qhost.Application{}
    local a, b = app:dataframe(app:topic("a")), app:dataframe(app:topic("b"))
    assert.has_error(function() a:join_interval(b, { grace_ms = 1, backward_ms = 2 }) end,
      nil)
    assert.has_error(function() a:join_interval(b, { how = "incorrect" }) end)
    a:join_interval(b)
    assert.has_error(function() a:join_interval(b) end)
    assert.has_no.errors(function() a:join_interval(b, { name = "second" }) end)
  end)

  it("registers a store on each side's topic, with a compacted changelog", function()
    local app = qhost.Application{ consumer_group = "g" }
    local a, b = app:dataframe(app:topic("a")), app:dataframe(app:topic("b"))
    a:join_interval(b, { grace_ms = 1000 })
    assert.are.equal("timestamped", app._stores.a.join.kind)
    assert.is_true(app._stores.b.join.keep_duplicates)
    assert.are.equal(1000, app._stores.b.join.grace_ms)
    assert.truthy(app._topics["changelog__g--a--join"])
    assert.truthy(app._topics["changelog__g--b--join"])
    assert.is_true(app._time_alignment)
  end)
end)
