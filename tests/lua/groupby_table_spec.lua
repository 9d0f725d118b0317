local qhost = require("qhost")
local printer = require("qhost.table_printer")

describe("StreamingDataFrame:group_by", function()
  it("re-keys in process when the input has one partition", function()
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("one"))
    sdf = sdf:group_by("user"):apply(function(v, key) return key end, { metadata = true })
    assert.are.same({ "u7" }, (sdf:test({ user = "u7" }, { key = "old" })))
  end)
  it("goes through a repartition topic when the input has several", function()
    local app = qhost.Application{ consumer_group = "grp" }
    local input = app:topic("orders", { config = qhost.TopicConfig{ num_partitions = 3 } })
    local sdf = app:dataframe(input)
    local grouped = sdf:group_by(function(v) return v.user .. "!" end, { name = "by_user" })
    assert.are.equal("repartition__grp--orders--by_user", grouped.topic.name)
    assert.are.equal(3, grouped.topic:num_partitions())
    local _, produced = sdf:test({ user = "u1" })
    assert.are.same({ { topic = "repartition__grp--orders--by_user", key = "u1!", value = { user = "u1" } } }, produced)
  end)
  it("needs a name with a function", function()
    local app = qhost.Application{}
    assert.has_error(function() app:dataframe(app:topic("t")):group_by(function() end) end,
      "StreamingDataFrame:group_by with a function needs { name = }")
  end)
end)

describe("print_table", function()
  it("writes a header then one plain line per message when not on a terminal", function()
    local lines = {}
    local show = printer.new({ metadata = true }, function(t) lines[#lines + 1] = t end, false)
    show(qhost.json.decode('{"b":1,"a":"x"}'), "k", 5)
    show(qhost.json.decode('{"b":2,"a":"y"}'), "k2", 6)
    assert.are.same({ "_key\t_timestamp\tb\ta", "k\t5\t1\tx", "k2\t6\t2\ty" }, lines)
  end)
  it("renders the last rows as a boxed table", function()
    assert.are.equal("+-----+----+\n| a   | bb |\n+-----+----+\n| 1   | 22 |\n| 333 |    |\n+-----+----+",
      printer.render({ { "1", "22" }, { "333", "" } }, { "a", "bb" }))
  end)
  it("redraws in place on a terminal, keeping the last `size` rows", function()
    local writes = {}
    local show = printer.new({ size = 2, live_slowdown = 0 }, function(t) writes[#writes + 1] = t end, true)
    show({ n = 1 }); show({ n = 2 }); show({ n = 3 })
    assert.are.equal(3, #writes)
    assert.truthy(writes[3]:find("^\27%[6A\r\27%[J"))
    assert.falsy(writes[3]:find("| 1 |", 1, true))
    assert.truthy(writes[3]:find("| 2 |\n| 3 |", 1, true))
  end)
end)
