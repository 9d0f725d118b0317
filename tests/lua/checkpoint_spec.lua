-- The checkpoint on fakes of the consumer, producer, sinks and error
-- policy: the order of its steps, and that nothing is committed past what
-- is not safe.
local checkpoint = require("qhost.runtime.checkpoint")
local error_policy = require("qhost.runtime.error_policy")

-- Fakes that write every call into one journal, in order.
local function world(opts)
  opts = opts or {}
  local journal = {}
  local function note(text) journal[#journal + 1] = text end
  local consumer = {
    commit = function(_, list)
      if opts.commit_error then return nil, opts.commit_error end
      table.sort(list, function(a, b) return a.topic .. a.partition < b.topic .. b.partition end)
      for _, tp in ipairs(list) do note(string.format("commit %s/%d@%d", tp.topic, tp.partition, tp.offset)) end
      return true
    end,
  }
  local producer = {
    failures = opts.failures,
    flush = function(self, timeout)
      note("producer flush")
      -- (undelivered: that many flushes time out, or all when true)
      local undelivered = opts.undelivered
      if undelivered == true or (type(undelivered) == "number" and #journal <= undelivered + 1) then
        if opts.on_timeout then opts.on_timeout(timeout) end
        return nil, "flush timed out: 3 messages not delivered"
      end
      return true
    end,
    take_failures = function(self)
      local f = self.failures
      self.failures = nil
      return f
    end,
    produce = function(_, topic, _, key, partition)
      note(string.format("changelog %s/%d %s", topic, partition, key))
      return true
    end,
  }
  local sink = {
    flush = function(_, topic, partition)
      note(string.format("sink flush %s/%d", topic, partition))
      if opts.sink_fails then error("disk full") end
    end,
    discard = function(_, topic, partition) note(string.format("sink discard %s/%d", topic, partition)) end,
  }
  local suppressed = {}
  local app = { on_producer_error = opts.suppress and function(err) suppressed[#suppressed + 1] = err return true end }
  local clock = 0
  local cp = checkpoint.new{ consumer = consumer, producer = function() return producer end, sinks = { sink },
    policy = error_policy.new(app), commit_interval = 5, commit_every = opts.every or 0, state = opts.state,
    flush_timeout = opts.flush_timeout or 30, stopping = opts.stopping, now = function() return clock end }
  return cp, journal, { producer = producer, suppressed = suppressed, set_clock = function(t) clock = t end }
end

local FAILURE = { { topic = "out", partition = 1, key = "k\0", error = "Broker: Message too large", code = 10 } }

describe("Checkpoint", function()
  it("flushes the sinks, then the producer, then commits the next offsets, in that order", function()
    local cp, journal = world()
    cp:processed("in", 0, 10)
    cp:processed("in", 0, 11)
    cp:processed("in", 1, 3)
    cp:commit()
    table.sort(journal, function(a, b)
      local order = { sink = 1, producer = 2, commit = 3 }
      local ka, kb = order[a:match("^%a+")], order[b:match("^%a+")]
      if ka ~= kb then return ka < kb end
      return a < b
    end)
    assert.are.same({ "sink flush in/0", "sink flush in/1", "producer flush", "commit in/0@12", "commit in/1@4" },
      journal)
  end)

  it("commits nothing when a sink fails to flush", function()
    local cp, journal = world{ sink_fails = true }
    cp:processed("in", 0, 1)
    local ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.truthy(err:find("nothing committed", 1, true), err)
    for _, line in ipairs(journal) do assert.falsy(line:find("^commit"), line) end
  end)

  it("commits nothing when the producer did not deliver everything", function()
    local cp, journal = world{ undelivered = true }
    cp:processed("in", 0, 1)
    local ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.truthy(err:find("nothing committed: the producer flush timed out", 1, true), err)
    for _, line in ipairs(journal) do assert.falsy(line:find("^commit"), line) end
  end)

  it("waits for the producer through a broker outage, in slices, up to flush_timeout (was 30 s at once)", function()
    -- Two slices time out (the broker is down), the third delivers.
    local slices = {}
    local cp, journal = world{ undelivered = 2, flush_timeout = 300, on_timeout = function(t) slices[#slices + 1] = t end }
    cp:processed("in", 0, 1)
    cp:commit()
    assert.are.same({ 10, 10 }, slices)
    assert.are.same({ "sink flush in/0", "producer flush", "producer flush", "producer flush", "commit in/0@2" },
      journal)
  end)

  it("gives up waiting for the producer at flush_timeout, or when a stop is asked, committing nothing", function()
    local cp, journal = world{ undelivered = true, flush_timeout = 25 }
    cp:processed("in", 0, 1)
    local ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.truthy(err:find("not delivered within 25 s", 1, true), err)
    assert.are.equal(3, #journal - 1)                  -- slices of 10, 10 and 5 s
    local stop = false
    cp, journal = world{ undelivered = true, flush_timeout = 300, stopping = function() return stop end,
      on_timeout = function() stop = true end }
    cp:processed("in", 0, 1)
    ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.truthy(err:find("stopped while waiting", 1, true), err)
    assert.are.same({ "sink flush in/0", "producer flush" }, journal)
  end)

  it("says why a commit fails when the group gave the partitions away (was: only \"Unknown member\")", function()
    local cp = world{ commit_error = "Broker: Unknown member" }
    cp:processed("in", 0, 1)
    local ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.truthy(err:find("Broker: Unknown member (this instance lost its partitions to the group after "
      .. "session.timeout.ms", 1, true), err)
  end)

  it("a failed delivery stops the app and no later commit happens, even when asked again", function()
    local cp, journal = world{ failures = FAILURE }
    cp:processed("in", 0, 1)
    local ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.are.equal("delivery to topic 'out' partition 1 failed: Broker: Message too large (key \"k\\x00\")", err)
    ok, err = pcall(cp.commit, cp)   -- the final checkpoint of the stop
    assert.is_false(ok)
    assert.truthy(err:find("nothing committed: a delivery failed and was not suppressed", 1, true), err)
    for _, line in ipairs(journal) do assert.falsy(line:find("^commit"), line) end
  end)

  it("a failed delivery that on_producer_error suppresses is logged and the commit goes on", function()
    local cp, journal, w = world{ failures = FAILURE, suppress = true }
    cp:processed("in", 0, 1)
    cp:commit()
    assert.are.same({ "delivery to topic 'out' partition 1 failed: Broker: Message too large (key \"k\\x00\")" },
      w.suppressed)
    assert.are.equal("commit in/0@2", journal[#journal])
  end)

  it("between checkpoints, failed deliveries are taken and judged as they come", function()
    local cp, _, w = world{ failures = FAILURE }
    assert.has_error(function() cp:check_deliveries() end)
    assert.is_nil(w.producer.failures)
  end)

  it("on a revoke, commits only the revoked partitions and drops what sinks hold of them", function()
    local cp, journal = world()
    cp:processed("in", 0, 5)
    cp:processed("in", 1, 7)
    cp:revoke({ { topic = "in", partition = 1 } })
    assert.are.same({ "sink flush in/1", "producer flush", "commit in/1@8", "sink discard in/1" }, journal)
    cp:commit()
    assert.are.equal("commit in/0@6", journal[#journal])
  end)

  it("on a lost partition, commits nothing of it", function()
    local cp, journal = world()
    cp:processed("in", 1, 7)
    cp:revoke({ { topic = "in", partition = 1 } }, true)
    assert.are.same({ "sink discard in/1" }, journal)
    cp:commit()
    for _, line in ipairs(journal) do assert.falsy(line:find("^commit"), line) end
  end)

  it("is due by commit_interval or commit_every, only with something to commit", function()
    local cp, _, w = world{ every = 3 }
    assert.is_false(cp:due(100))
    cp:processed("in", 0, 1)
    assert.is_false(cp:due(1))
    w.set_clock(0)
    assert.is_true(cp:due(5))
    cp:processed("in", 0, 2)
    cp:processed("in", 0, 3)
    assert.is_true(cp:due(0))
    cp:commit()
    assert.is_false(cp:due(0))
  end)

  -- The state manager over one store partition whose database cannot be
  -- written (a full disk), with or without a changelog.
  local function full_disk_state(changelog)
    local manager = require("qhost.runtime.state.manager")
    local transaction = require("qhost.runtime.state.transaction")
    local m = manager.new{ app = { state_dir = "/nonexistent", consumer_group = "g",
      use_changelog_topics = changelog }, watermarks = function() return 7 end }
    local db = { get = function() return nil end,
      write = function() error("state store write failed: IO error: No space left on device", 0) end }
    local tx = transaction.new(db)
    m.open = { ["in"] = { [0] = { default = { partition = db, tx = tx,
      changelog = changelog and "changelog__g--in--default" or false } } } }
    tx:set("k", "1")
    return m
  end

  it("without a changelog, a store that cannot be written fails the checkpoint before any commit", function()
    local cp, journal = world{ state = full_disk_state(false) }
    cp:processed("in", 0, 4)
    local ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.truthy(err:find("checkpoint aborted, nothing committed: state store write failed", 1, true), err)
    for _, line in ipairs(journal) do assert.is_nil(line:find("^commit"), line) end
  end)

  it("with a changelog, a store that cannot be written fails after the commit, its changes in the changelog",
    function()
    local cp, journal = world{ state = full_disk_state(true) }
    cp:processed("in", 0, 4)
    local ok, err = pcall(cp.commit, cp)
    assert.is_false(ok)
    assert.truthy(err:find("offsets committed, but state store write failed", 1, true), err)
    assert.truthy(err:find("changelog__g--in--default", 1, true), err)
    assert.are.same({ "sink flush in/0", "changelog changelog__g--in--default/0 k", "producer flush", "commit in/0@5" },
      journal)
  end)
end)
