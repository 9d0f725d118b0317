-- Every public call checks what it is given the same way: an unknown
-- option is refused with the closest valid name, a wrong type is named, and
-- the error points at the user's own file:line, never inside qhost.
local qhost = require("qhost")

local THIS = "tests/lua/usage_errors_spec.lua"

-- Runs fn, which must raise; returns the message. The error must point at
-- this file (the user's code), at the line of the call.
local function raised(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error raised")
  assert.are.equal("string", type(err))
  local file = err:match("^(.-):%d+: ")
  assert.are.equal(THIS, file, "the error does not point at the user's line: " .. err)
  return err
end

local function has(err, text)
  assert.truthy(err:find(text, 1, true), err)
end

local function new_sdf()
  local app = qhost.Application{}
  return app:dataframe(app:topic("input")), app
end

describe("errors at the user's line", function()
  it("Application options: unknown (with the closest name), wrong type, wrong value", function()
    has(raised(function() qhost.Application{ auto_offset_rest = "earliest" } end),
      'Application: unknown option "auto_offset_rest"; did you mean "auto_offset_reset"?')
    has(raised(function() qhost.Application{ commit_interval = "5" } end),
      'Application: commit_interval must be a number, got the string "5"')
    has(raised(function() qhost.Application{ auto_offset_reset = "earliset" } end),
      'did you mean "earliest"?')
    has(raised(function() qhost.Application{ on_processing_error = true } end),
      "on_processing_error must be a function(err, row, logger) -> bool")
    has(raised(function() qhost.Application("x") end), "Application expects a table of options")
  end)

  it("sources and sinks without what they need", function()
    has(raised(function() qhost.sources.CSVSource{} end), "CSVSource: path must be the path of a CSV file")
    has(raised(function() qhost.sources.CSVSource{ path = "a.csv", delimter = ";" } end),
      'CSVSource: unknown option "delimter"; did you mean "delimiter"?')
    has(raised(function() qhost.sinks.CSVSink{} end), "CSVSink: path must be a file path")
    has(raised(function() qhost.sinks.CSVSink{ pth = "x.csv" } end), 'did you mean "path"?')
    local Plain = qhost.sources.Source:extend("Plain")
    has(raised(function() Plain{} end), "Plain: name must be a non-empty string")
  end)

  it("a source field that cannot travel, given through app:dataframe{ source = }", function()
    local app = qhost.Application{}
    local Odd = qhost.sources.Source:extend("Odd")
    has(raised(function() app:dataframe{ source = Odd{ name = "odd", co = coroutine.create(print) } } end),
      "Odd 'odd': field co is a thread")
  end)

  it("topics: unknown serializers, options and TopicConfig fields; names Kafka refuses", function()
    local app = qhost.Application{}
    has(raised(function() app:topic("t", { value_deserializer = "jsn" }) end),
      'unknown serializer "jsn"; did you mean "json"?')
    has(raised(function() app:topic("t", { value_serialiser = "json" }) end),
      'unknown option "value_serialiser"; did you mean "value_serializer"?')
    has(raised(function() qhost.TopicConfig{ num_partitons = 3 } end),
      'TopicConfig: unknown option "num_partitons"; did you mean "num_partitions"?')
    has(raised(function() app:topic("bad topic name!") end),
      "not a valid Kafka topic name: it contains \" \"; Kafka allows only letters, digits, '.', '_' and '-'")
    has(raised(function() app:topic(string.rep("x", 250)) end), "longer than 249 characters")
    has(raised(function() app:add_source(qhost.sources.CSVSource{ path = "my data.csv" }) end),
      "CSVSource 'my data.csv': its default topic \"source__my data.csv\" is not a valid Kafka topic name")
    has(raised(function() app:add_source(qhost.sources.CSVSource{ path = "my data.csv" }) end),
      "give the source a name =")
  end)

  it("dataframe options and types", function()
    local sdf = new_sdf()
    has(raised(function() sdf:print{ prety = true } end),
      'StreamingDataFrame:print: unknown option "prety"; did you mean "pretty"?')
    has(raised(function() sdf:apply(function(v) return v end, { exapnd = true }) end),
      'did you mean "expand"?')
    has(raised(function() sdf:test(1, { ky = "k" }) end), 'StreamingDataFrame:test: unknown option "ky"')
    has(raised(function() sdf:filter(function() end, { expand = true }) end),
      'StreamingDataFrame:filter: unknown option "expand"')
    has(raised(function() sdf:print_table{ sizes = 3 } end), 'did you mean "size"?')
    has(raised(function() sdf:to_topic(qhost.Application{}:topic("o"), { key = "k" }) end),
      "StreamingDataFrame:to_topic: key must be a function, got the string \"k\"")
    has(raised(function() sdf:drop("x", { errors = "ignored" }) end), 'did you mean "ignore"?')
    has(raised(function() sdf:group_by(5) end), "group_by expects a column name or a function, got number")
  end)

  it("a dot instead of a colon, and a misspelled method, say what to write", function()
    local sdf, app = new_sdf()
    has(raised(function() sdf.apply(function(v) return v end) end),
      "StreamingDataFrame.apply called with a dot: write sdf:apply(...) (with a colon)")
    has(raised(function() sdf:aply(function(v) return v end) end),
      'StreamingDataFrame has no method or field "aply"; did you mean sdf:apply?')
    has(raised(function() app:rn() end), 'Application has no method or field "rn"; did you mean app:run?')
    has(raised(function() app.run() end), "Application.run called with a dot: write app:run(...)")
  end)

  it("app:run's options and types", function()
    local _, app = new_sdf()
    has(raised(function() app:run{ count = "5" } end), 'app:run: count must be an integer, got the string "5"')
    has(raised(function() app:run{ count = 0 } end), "app:run: count must be >= 1")
    has(raised(function() app:run{ timout = 1 } end), 'did you mean "timeout"?')
  end)

  it("one dataframe per topic, one group_by per name, as Quix", function()
    local app = qhost.Application{}
    local t = app:topic("once", { config = qhost.TopicConfig{ num_partitions = 2 } })
    local sdf = app:dataframe(t)
    has(raised(function() app:dataframe(t) end),
      "app:dataframe: there is already a StreamingDataFrame using topic 'once'")
    sdf:group_by("user")
    has(raised(function() sdf:group_by("user") end), 'a group_by named "user" already exists on topic \'once\'')
  end)

  it("select takes a list or several names, and keeps them all", function()
    local sdf = new_sdf()
    local both = sdf:select("a", "b")
    assert.are.same({ { a = 1, b = 2 } }, (both:test({ a = 1, b = 2, c = 3 })))
    local listed = new_sdf():select{ "b", "a" }
    assert.are.equal('{"b":2,"a":1}', qhost.json.encode((listed:test({ a = 1, b = 2 }))[1]))
  end)

  it("runtime errors of built-in operations name the operation and the user's line", function()
    local sdf = new_sdf()
    local line = debug.getinfo(1, "l").currentline + 1
    sdf:drop("missing")
    local ok, err = pcall(sdf.test, sdf, { a = 1 })
    assert.is_false(ok)
    assert.are.equal(string.format('drop (%s:%d): the value has no field "missing"', THIS, line), err)
  end)

  it("joins: misuse is refused where it is asked for", function()
    local sdf, app = new_sdf()
    local other = app:dataframe(app:topic("other"))
    has(raised(function() sdf:join_asof(sdf) end), "joining dataframes of the same topic ('input') is not supported")
    has(raised(function() sdf:join_asof(other, { how = "outer" }) end),
      'StreamingDataFrame:join_asof: how must be one of "inner", "left", got the string "outer"')
    has(raised(function() sdf:join_interval(other, { on_merge = "keep_left" }) end),
      'on_merge must be "keep-left", "keep-right", "raise" or a function(left, right)')
    has(raised(function() sdf:join_interval(other, { grace_ms = 10, backward_ms = 20 }) end),
      "backward_ms (20) must not be greater than grace_ms (10)")
    has(raised(function() sdf:join_lookup({}, {}) end), "StreamingDataFrame:join_lookup expects a lookup")
    has(raised(function() qhost.lookups.SQLiteLookupField{ table = "t", columns = { "*" }, on = "id" } end),
      "'*' is not allowed in columns")
    has(raised(function() qhost.lookups.SQLiteLookupField{ table = "t; drop", columns = { "a" }, on = "id" } end),
      "table must be an SQL identifier")
  end)
end)

describe("the logger given to error callbacks", function()
  it("takes methods with a colon, as API.md's rule, and plain calls", function()
    local log = require("qhost.log")
    local written = {}
    local real = io.stderr
    io.stderr = { write = function(_, ...) written[#written + 1] = table.concat({ ... }) end }
    local ok, err = pcall(function()
      log:info("colon %d", 1)
      log.info("dot %d", 2)
      log:warning("100%% sure")
      log:error("plain")
    end)
    io.stderr = real
    assert.is_true(ok, err)
    assert.are.equal(4, #written)
    assert.truthy(written[1]:find(" INFO .*: colon 1\n$"), written[1])
    assert.truthy(written[2]:find(" INFO .*: dot 2\n$"), written[2])
    -- no arguments: the text as it is (Python's logging does the same)
    assert.truthy(written[3]:find(" WARNING .*: 100%%%% sure\n$"), written[3])
    assert.truthy(written[4]:find(" ERROR .*: plain\n$"), written[4])
  end)
end)
