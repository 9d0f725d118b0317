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
    assert.has_error(function() qhost.Application{ brokers = "x" } end, 'Application: unknown option "brokers"')
    assert.has_error(function() qhost.Application{ commit_interval = "5" } end,
      "Application: commit_interval must be a number, got string")
    assert.has_error(function() qhost.Application{ auto_offset_reset = "newest" } end)
    assert.has_error(function() qhost.Application{ loglevel = "LOUD" } end)
  end)
  it("builds librdkafka configs with the extra config on top", function()
    local app = qhost.Application{ consumer_group = "g", auto_offset_reset = "earliest",
      consumer_extra_config = { ["fetch.wait.max.ms"] = 7 },
      producer_extra_config = { ["linger.ms"] = 1 } }
    app._broker = "127.0.0.1:9"
    local c = app:_consumer_config()
    assert.are.equal("g", c["group.id"])
    assert.are.equal("earliest", c["auto.offset.reset"])
    assert.are.equal(7, c["fetch.wait.max.ms"])
    assert.are.equal(false, c["enable.auto.commit"])
    local p = app:producer_config()
    assert.are.equal("127.0.0.1:9", p["bootstrap.servers"])
    assert.are.equal(1, p["linger.ms"])
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
    assert.has_error(function() app:run{ counts = 1 } end, 'app:run: unknown option "counts"')
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
