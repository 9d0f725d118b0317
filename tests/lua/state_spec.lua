-- State, layer by layer: the transaction on a fake partition, the State a
-- user sees on a transaction, the RocksDB partition with its recovery
-- rule, and stateful functions through sdf:test.
local qhost = require("qhost")
local codec = require("qhost.codec")
local partition = require("qhost.runtime.state.partition")
local state_mod = require("qhost.state")
local transaction = require("qhost.runtime.state.transaction")

-- A fake store partition: a table, and the writes it was given.
local function fake_partition(data)
  local p = { data = data or {}, writes = {} }
  function p:get(k) return self.data[k] end
  function p:write(puts, deletes, offset)
    self.writes[#self.writes + 1] = { puts = puts, deletes = deletes, offset = offset }
    for _, k in ipairs(deletes) do self.data[k] = nil end
    for i = 1, #puts, 2 do self.data[puts[i]] = puts[i + 1] end
  end
  return p
end

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/qhost-state.XXXXXX")
  local dir = p:read("*l")
  p:close()
  return dir
end

describe("state transaction", function()
  it("reads its own writes over the database, and writes them out in one batch", function()
    local part = fake_partition({ a = "1", b = "2" })
    local tx = transaction.new(part)
    tx:set("a", "10")
    tx:delete("b")
    tx:set("c", "3")
    assert.are.equal("10", tx:get("a"))
    assert.is_nil(tx:get("b"))
    assert.is_false(tx:exists("b"))
    assert.are.same({ { "a", "10" }, { "b", nil }, { "c", "3" } }, tx:changes())
    assert.are.same({}, part.writes)                -- nothing reaches the database before flush
    tx:flush(41)
    assert.are.same({ { puts = { "a", "10", "c", "3" }, deletes = { "b" }, offset = 41 } }, part.writes)
    assert.is_true(tx:empty())
    assert.are.equal("10", tx:get("a"))             -- now from the database
  end)
  it("discards an interval's changes", function()
    local part = fake_partition({ a = "1" })
    local tx = transaction.new(part)
    tx:set("a", "2")
    tx:discard()
    assert.are.equal("1", tx:get("a"))
    assert.are.equal(0, tx.bytes)
  end)
end)

describe("State", function()
  it("scopes keys to the message key, stores JSON as Quix does", function()
    local part = fake_partition()
    local tx = transaction.new(part)
    local st = state_mod.new(tx)
    st:_scope("user-1")
    st:set("total", 5)
    st:set({ "composite", 1 }, { list = { 1, 2 }, big = codec.json_decode("123456789012345678") })
    st:_scope("user-2")
    assert.is_nil(st:get("total"))
    assert.are.equal(0, st:get("total", 0))
    st:_scope("user-1")
    assert.are.equal(5, st:get("total"))
    assert.is_true(st:exists("total"))
    -- a Lua table has no key order: JSON writes its keys sorted
    assert.are.equal('{"big":123456789012345678,"list":[1,2]}', codec.json_encode(st:get({ "composite", 1 })))
    tx:flush(0)
    assert.are.equal("5", part.data['user-1|"total"'])
    st:delete("total")
    assert.is_false(st:exists("total"))
  end)
  it("stores numbers as the JSON encoder writes them and reads them back as the decoder does", function()
    -- numbers take a path of their own (no call into C): the bytes and the
    -- values read back must be the codec's, at every edge of that path
    local part = fake_partition()
    local tx = transaction.new(part)
    local st = state_mod.new(tx)
    st:_scope("k")
    local values = { 0, -0, 1, -1, 7.5, -0.1, 1e13, 99999999999999, -99999999999999, 1e14, -1e14,
                     123456789012345, 2 ^ 53, 2 ^ 53 + 2, 1e300, 5e-324, 1 / 0, -1 / 0, 0 / 0 }
    for i, v in ipairs(values) do st:set(i, v) end
    tx:flush(0)
    local fresh = state_mod.new(transaction.new(part))
    fresh:_scope("k")
    for i, v in ipairs(values) do
      local text = codec.json_encode(v)
      assert.are.equal(text, part.data["k|" .. i], "stored bytes of " .. text)
      local got, want = fresh:get(i), codec.json_decode(text)
      assert.are.equal(tostring(want), tostring(got), "read back " .. text)
      assert.are.equal(type(want), type(got), "type read back of " .. text)
    end
    -- a big integer stored by the decoder stays exact (an int64), not a double
    part.data['k|"big"'] = "123456789012345678"
    assert.are.equal("123456789012345678", codec.json_encode(fresh:get("big")))
  end)
  it("refuses nil (pointing to delete) and what JSON cannot hold, at the caller's line", function()
    local st = state_mod.new(transaction.new(fake_partition()))
    st:_scope("k")
    local ok, err = pcall(st.set, st, "x", nil)
    assert.is_false(ok)
    assert.truthy(err:find("state_spec.lua:%d+: state:set%(x, nil%): use state:delete"), err)
    ok, err = pcall(st.set, st, "x", { f = print })
    assert.truthy(err:find("the value cannot be stored as JSON", 1, true), err)
    ok, err = pcall(function() return st.get("x") end)
    assert.truthy(err:find("State.get called with a dot", 1, true), err)
  end)
end)

describe("state partition (RocksDB)", function()
  it("keeps data and its changelog offset across reopening", function()
    local dir = tmpdir()
    local p = partition.open(dir .. "/db")
    assert.are.equal(-1, p:changelog_offset())
    p:write({ "k", "v" }, {}, 7)
    p:close()
    p = partition.open(dir .. "/db")
    assert.are.equal("v", p:get("k"))
    assert.are.equal(7, p:changelog_offset())
    p:close()
    os.execute("rm -rf " .. dir)
  end)
  it("recovers from the changelog, skipping records of checkpoints that were not committed", function()
    local dir = tmpdir()
    local p = partition.open(dir .. "/db")
    p:write({ "a", "old" }, {}, 1)           -- holds the changelog up to offset 1
    local changelog = {
      { offset = 0, key = "a", value = "older" },
      { offset = 1, key = "a", value = "old" },
      { offset = 2, key = "a", value = "new", headers = { { "__processed_tp_offsets__", '{"in":9}' } } },
      { offset = 3, key = "b", value = "x", headers = { { "__processed_tp_offsets__", '{"in":10}' } } },
      { offset = 4, key = "b", value = nil, headers = { { "__processed_tp_offsets__", '{"in":11}' } } },
      { offset = 5, key = "c", value = "late", headers = { { "__processed_tp_offsets__", '{"in":20}' } } },
    }
    local asked_from
    local applied = p:recover(function(from, on_record)
      asked_from = from
      for _, r in ipairs(changelog) do if r.offset >= from then on_record(r) end end
    end, { ["in"] = 12 }, codec.json_decode)
    assert.are.equal(2, asked_from)
    assert.are.equal(3, applied)               -- offsets 2, 3, 4; 5 came from input 20 >= 12
    assert.are.equal("new", p:get("a"))
    assert.is_nil(p:get("b"))                  -- set, then deleted
    assert.is_nil(p:get("c"))
    assert.are.equal(5, p:changelog_offset())
    p:close()
    os.execute("rm -rf " .. dir)
  end)
  it("rebuilds a damaged database", function()
    local dir = tmpdir()
    local p = partition.open(dir .. "/db")
    p:write({ "k", "v" }, {}, 3)
    p:close()
    -- Damage every table and the manifest.
    os.execute("for f in " .. dir .. "/db/MANIFEST-* " .. dir .. "/db/*.log; do "
      .. "[ -f \"$f\" ] && printf 'garbage' > \"$f\"; done")
    local ok, reopened = pcall(partition.open, dir .. "/db")
    assert.is_true(ok, reopened)
    assert.are.equal(-1, reopened:changelog_offset())   -- empty again: the changelog refills it
    reopened:close()
    os.execute("rm -rf " .. dir)
  end)
end)

-- A full disk under a store: a write fails with RocksDB's error naming the
-- file, and the process goes on (RocksDB's info logger used to abort it at
-- its next line). Needs root, for a small tmpfs; run in a child process,
-- which an abort would end.
describe("state partition on a full disk", function()
  it("fails the write with a clear error, and the process goes on to close it", function()
    local uid = io.popen("id -u"):read("*l")
    if uid ~= "0" then pending("mounting a small tmpfs needs root") return end
    local dir = tmpdir()
    assert.is_true(os.execute("mount -t tmpfs -o size=4m tmpfs " .. dir) == 0)
    -- beside the folder (not dir/../x.lua: rm -rf removes dir first, and
    -- then that path leads nowhere)
    local script = dir .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write([[
local partition = require("qhost.runtime.state.partition")
local p = partition.open(arg[1])
local pad = string.rep("x", 1000)
for i = 1, 100000 do
  local puts = {}
  for j = 1, 100 do puts[#puts + 1] = i .. ":" .. j; puts[#puts + 1] = pad end
  local ok, err = pcall(p.write, p, puts, {}, i)
  if not ok then print(err) break end
end
p:close()
print("closed")
]])
    f:close()
    local qhost_bin = os.getenv("QHOST_BIN") or ((os.getenv("QHOST_TEST_ROOT") or ".") .. "/build/qhost")
    local out = io.popen(qhost_bin .. " lua " .. script .. " " .. dir .. "/db 2>&1; echo rc=$?"):read("*a")
    os.execute("umount " .. dir .. "; rm -rf " .. dir .. " " .. script)
    assert.truthy(out:find("No space left on device", 1, true), out)
    assert.truthy(out:find(dir .. "/db/", 1, true), out)        -- the file it could not write
    assert.truthy(out:find("closed\nrc=0\n"), out)
  end)
end)

describe("stateful functions through sdf:test", function()
  it("apply, update and filter get the message key's state; it persists across test calls", function()
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("payments"))
    sdf = sdf:apply(function(v, state)
      local total = state:get("total", 0) + v.amount
      state:set("total", total)
      return { total = total }
    end, { stateful = true })
    sdf = sdf:filter(function(v, key, ts, headers, state)
      local n = state:get("n", 0) + 1
      state:set("n", n)
      return n ~= 2
    end, { stateful = true, metadata = true })
    assert.are.same({ { total = 5 } }, (sdf:test({ amount = 5 }, { key = "a" })))
    assert.are.same({}, (sdf:test({ amount = 1 }, { key = "a" })))     -- the second of key a: filtered
    assert.are.same({ { total = 7 } }, (sdf:test({ amount = 7 }, { key = "b" })))
    assert.are.same({ { total = 9 } }, (sdf:test({ amount = 3 }, { key = "a" })))
  end)
  it("registers the changelog topic Quix names, compacted, with the topic's partitions", function()
    local app = qhost.Application{ consumer_group = "grp" }
    local sdf = app:dataframe(app:topic("orders", { config = qhost.TopicConfig{ num_partitions = 3 } }))
    sdf:update(function() end, { stateful = true })
    local t = app._topics["changelog__grp--orders--default"]
    assert.truthy(t)
    assert.are.equal(3, t:num_partitions())
    assert.are.equal("compact", t.config.extra_config["cleanup.policy"])
    local off = qhost.Application{ consumer_group = "g2", use_changelog_topics = false }
    off:dataframe(off:topic("x")):update(function() end, { stateful = true })
    assert.is_nil(off._topics["changelog__g2--x--default"])
  end)
end)
