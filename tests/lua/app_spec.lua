local qhost = require("qhost")

describe("Application", function()
  it("has the defaults of API.md", function()
    local app = qhost.Application{}
    assert.are.equal("qhost-default", app.consumer_group)
    assert.are.equal("latest", app.auto_offset_reset)
    assert.are.equal(5.0, app.commit_interval)
    assert.are.equal(0, app.commit_every)
    assert.are.equal("at-least-once", app.processing_guarantee)
    assert.are.equal("state", app.state_dir)
    assert.is_true(app.auto_create_topics)
    assert.are.equal("INFO", app.loglevel)
  end)
  it("rejects unknown options and wrong types", function()
    local ok, err = pcall(qhost.Application, { brokers = "x" })
    assert.truthy(err:find('Application: unknown option "brokers" (valid: ', 1, true), err)
    assert.has_error(function() qhost.Application{ commit_interval = "5" } end,
      'Application: commit_interval must be a number, got the string "5"')
    assert.has_error(function() qhost.Application{ auto_offset_reset = "newest" } end)
    assert.has_error(function() qhost.Application{ loglevel = "LOUD" } end)
  end)
  it("refuses a join the store layout cannot hold: a second join on the same right side needs a name", function()
    local function err_of(fn) local _, e = pcall(fn) return e end
    local app = qhost.Application{}
    local a, b, c = app:dataframe(app:topic("a")), app:dataframe(app:topic("b")), app:dataframe(app:topic("c"))
    a:join_asof(b)
    local e = err_of(function() c:join_asof(b) end)
    assert.truthy(e:find("app_spec.lua:%d+: StreamingDataFrame:join_asof: a state store named \"join\" already exists "
      .. "on topic 'b'"), e)
    assert.has_no.errors(function() c:join_asof(b, { name = "join2" }) end)
    -- Quix's check at start: the topics' partition counts (known once the app runs).
    local app2 = qhost.Application{}
    local l = app2:dataframe(app2:topic("l", { config = qhost.TopicConfig{ num_partitions = 2 } }))
    local r = app2:dataframe(app2:topic("r", { config = qhost.TopicConfig{ num_partitions = 3 } }))
    l:join_interval(r)
    e = err_of(function() require("qhost.joins").check_topics(app2) end)
    assert.truthy(e:find("join_interval (tests/lua/app_spec.lua:", 1, true), e)
    assert.truthy(e:find("topics 'l' (2 partitions) and 'r' (3 partitions) cannot be joined", 1, true), e)
  end)
  it("clear_state deletes this consumer group's local stores only", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir .. "/mine/x " .. dir .. "/other/y")
    qhost.Application{ state_dir = dir, consumer_group = "mine" }:clear_state()
    assert.is_nil(io.open(dir .. "/mine/x"))
    assert.truthy(io.open(dir .. "/other/y"))
    os.execute("rm -rf " .. dir)
  end)
  it("builds librdkafka configs with the extra config on top", function()
    local app = qhost.Application{ consumer_group = "g", auto_offset_reset = "earliest",
      consumer_extra_config = { ["fetch.wait.max.ms"] = 7 },
      producer_extra_config = { ["linger.ms"] = 1 } }
    app._broker = "127.0.0.1:9"
    local broker = require("qhost.runtime.broker")
    local c = broker.consumer_config(app)
    assert.are.equal("g", c["group.id"])
    assert.are.equal("earliest", c["auto.offset.reset"])
    assert.are.equal(7, c["fetch.wait.max.ms"])
    assert.are.equal(false, c["enable.auto.commit"])
    local p = broker.producer_config(app)
    assert.are.equal("127.0.0.1:9", p["bootstrap.servers"])
    assert.are.equal(1, p["linger.ms"])
  end)
  it("bounds a source process's producer to 30,000 queued messages unless producer_extra_config says", function()
    -- A source faster than its broker kept librdkafka's 100,000 (45 MB).
    local clients = require("qhost.kafka.clients")
    local broker = require("qhost.runtime.broker")
    -- plain: no partition of their own (else partition 0)
    local function queued_before_full(extra, plain)
      local partition = 0
      if plain then partition = nil end
      extra["qhost.queue.full.timeout.ms"] = 0
      local app = qhost.Application{ producer_extra_config = extra }
      app._broker = "127.0.0.1:1"   -- nothing listens: every message stays queued
      local p = assert(clients.producer(broker.source_producer_config(app)))
      local n = 0
      while n < 100000 do
        local ok, _, code = p:produce("t", "v", nil, partition)
        if not ok then
          assert.are.equal(clients.ERR_QUEUE_FULL, code)
          break
        end
        n = n + 1
      end
      p:close()
      return n
    end
    assert.are.equal(30000, queued_before_full({}))
    assert.are.equal(40000, queued_before_full({ ["queue.buffering.max.messages"] = 40000 }))
    -- Plain messages (no partition, headers or timestamp of their own) are
    -- held beyond it, 64 of them, to go to librdkafka in batches
    -- (host/kafka_batch.c); producer_extra_config can turn that off.
    assert.are.equal(30064, queued_before_full({}, "plain"))
    assert.are.equal(30000, queued_before_full({ ["qhost.produce.batch"] = false }, "plain"))
    -- the app's own producer keeps librdkafka's bound
    local app = qhost.Application{}
    app._broker = "127.0.0.1:1"
    assert.is_nil(broker.producer_config(app)["queue.buffering.max.messages"])
  end)
  it("gives its admin client the connection and security settings of producer_extra_config, as Quix", function()
    -- (a secured cluster refused the admin before: it had the address only)
    local app = qhost.Application{ producer_extra_config = { ["security.protocol"] = "sasl_plaintext",
      ["sasl.mechanisms"] = "PLAIN", ["sasl.username"] = "u", ["sasl.password"] = "p", ["client.id"] = "me",
      ["linger.ms"] = 1, ["transactional.id"] = "t", ["acks"] = "all", ["qhost.queue.full.timeout.ms"] = 5,
      ["bootstrap.servers"] = "127.0.0.1:1" } }
    app._broker = "127.0.0.1:9"
    local config = require("qhost.runtime.broker").admin_config(app)
    config.log_level = nil
    assert.are.same({ ["bootstrap.servers"] = "127.0.0.1:9", ["security.protocol"] = "sasl_plaintext",
      ["sasl.mechanisms"] = "PLAIN", ["sasl.username"] = "u", ["sasl.password"] = "p", ["client.id"] = "me",
      -- the changelogs' ends include open transactions (state recovery)
      ["isolation.level"] = "read_uncommitted" }, config)
    -- librdkafka takes every one of them for an admin handle
    config["security.protocol"], config["sasl.mechanisms"] = nil, nil
    config["sasl.username"], config["sasl.password"] = nil, nil
    local admin, err = require("qhost.kafka.clients").admin(config)
    assert.is_truthy(admin, err)
    admin:close()
  end)
  it("gives its producers (the app's, the sources') a partition's order and no duplicates across retries", function()
    -- The embedded broker fails two Produce requests (NOT_LEADER_OR_FOLLOWER):
    -- librdkafka retries them; without idempotence (before: qhost's default)
    -- the retried batch landed after the batches sent behind it.
    local clients = require("qhost.kafka.clients")
    local topic_reader = require("qhost.kafka.topic_reader")
    local broker = require("qhost.runtime.broker")
    local mock = assert(clients.mock_cluster(1))
    local app = qhost.Application{ producer_extra_config = { ["batch.num.messages"] = 100, ["linger.ms"] = 5 } }
    app._broker = mock:bootstraps()
    assert(mock:create_topic("ordered", 1))
    local p = assert(clients.producer(broker.producer_config(app)))
    assert(p:produce("ordered", "0", nil, 0))
    assert(p:flush(10))
    assert(mock:push_request_errors(0, { 6, 6 }))
    for i = 1, 2000 do assert(p:produce("ordered", tostring(i), nil, 0)) end
    assert(p:flush(30))
    p:close()
    local got = {}
    assert(topic_reader.read_to_end({ ["bootstrap.servers"] = app._broker }, "ordered",
      { on_record = function(r) got[#got + 1] = tonumber(r.value) end }))
    mock:close()
    local misplaced = 0
    for i, v in ipairs(got) do if v ~= i - 1 then misplaced = misplaced + 1 end end
    assert.are.equal(2001, #got)
    assert.are.equal(0, misplaced)
  end)
  it("dataframe accepts a topic or { topic, source }", function()
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("t"))
    assert.are.equal("t", sdf.topic.name)
    local src = qhost.sources.CSVSource{ path = "input.csv" }
    local sdf2 = app:dataframe{ source = src }
    assert.are.equal("source__input.csv", sdf2.topic.name)
    assert.has_error(function() app:dataframe("t") end)
  end)
  it("run refuses an app with nothing to run, and unknown options", function()
    local app = qhost.Application{}
    assert.has_error(function() app:run() end, "app:run: nothing to run (no dataframe and no source)")
    app:dataframe(app:topic("t"))
    assert.has_error(function() app:run{ counts = 1 } end,
      'app:run: unknown option "counts"; did you mean "count"? (valid: collect, count, metadata, timeout)')
  end)
end)

describe("qhost.json", function()
  it("keeps key order through decode and encode", function()
    local text = '{"key":"key5","field":"value5","timestamp":"5"}'
    assert.are.equal(text, qhost.json.encode(qhost.json.decode(text)))
  end)
  it("encodes arrays, integers and nested values compactly", function()
    assert.are.equal('[1,2.5,"x",{"a":true}]', qhost.json.encode({ 1, 2.5, "x", { a = true } }))
  end)
end)
