local qhost = require("qhost")
local printer = require("qhost.runtime.table_printer")

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
  -- A printer whose output is kept, and a clock the test moves.
  local function capture(live, width)
    local writes = {}
    return printer.new(function(t) writes[#writes + 1] = t end, live, width), writes
  end
  local function add(t, value, key, ts, now, metadata)
    local names, values = printer.row_of(value, key, ts, metadata)
    t:add_row(names, values, now)
  end

  it("prints a full table when not on a terminal, then starts again; the rest at the end", function()
    local p, writes = capture(false)
    local t = p:add_table{ size = 2 }
    add(t, qhost.json.decode('{"b":1,"a":"x"}'), "k", 5, 0, true)
    p:tick(0)
    assert.are.equal(0, #writes)
    add(t, qhost.json.decode('{"b":2,"a":"y"}'), "k2", 6, 0, true)
    p:tick(0)
    assert.are.same({ "+------+------------+---+---+\n| _key | _timestamp | b | a |\n"
      .. "+------+------------+---+---+\n| k    | 5          | 1 | x |\n| k2   | 6          | 2 | y |\n"
      .. "+------+------------+---+---+" }, writes)
    add(t, { b = 3 }, "k3", 7, 1, true)
    p:tick(1)
    assert.are.equal(1, #writes)
    p:tick(1, true)   -- the run ends: what is left is shown
    assert.are.equal(2, #writes)
    assert.truthy(writes[2]:find("| k3   | 7          | 3 |   |", 1, true), writes[2])
  end)
  it("prints an incomplete table after `timeout` seconds", function()
    local p, writes = capture(false)
    local t = p:add_table{ size = 5, timeout = 5 }
    add(t, { n = 1 }, nil, 0, 10)
    p:tick(14)
    assert.are.equal(0, #writes)
    p:tick(15)
    assert.are.equal(1, #writes)
  end)
  it("shows every column seen: added by set/update, or first seen in later messages", function()
    local p, writes = capture(false)
    local t = p:add_table{ size = 3 }
    local v = qhost.json.decode('{"a":1}')
    v.added = "new"                     -- as set/update do
    add(t, v, nil, 0, 0)
    add(t, qhost.json.decode('{"a":2,"later":true}'), nil, 0, 0)
    add(t, 7, nil, 0, 0)                -- not an object: column "0"
    p:tick(0)
    assert.truthy(writes[1]:find("| a | added | later | 0 |", 1, true), writes[1])
    assert.truthy(writes[1]:find("| 1 | new   |       |   |", 1, true), writes[1])
    assert.truthy(writes[1]:find("| 2 |       | true  |   |", 1, true), writes[1])
    assert.truthy(writes[1]:find("|   |       |       | 7 |", 1, true), writes[1])
  end)
  it("keeps the columns asked for, and cuts a table wider than the terminal", function()
    local p, writes = capture(false, 24)
    local t = p:add_table{ size = 1, columns = { "b", "a" }, title = "T" }
    add(t, { a = "1", b = "2", c = "3" }, nil, 0, 0)
    p:tick(0)
    assert.truthy(writes[1]:find("^T\n"), writes[1])
    assert.truthy(writes[1]:find("| b | a |", 1, true), writes[1])
    local q, wide = capture(false, 20)
    local t2 = q:add_table{ size = 1 }
    add(t2, { aaaaaa = 1, bbbbbb = 2, cccccc = 3 }, nil, 0, 0)
    q:tick(0)
    assert.truthy(wide[1]:find("(2 more columns not shown)", 1, true), wide[1])
    for line in wide[1]:gmatch("[^\n]+") do
      if line:find("^[|+]") then assert.is_true(#line <= 20, line) end
    end
  end)
  it("lines up columns of wide (CJK, emoji) and combining characters as a terminal shows them", function()
    assert.are.equal(6, printer._display_len("日本語"))
    assert.are.equal(3, printer._display_len("😀x"))
    assert.are.equal(1, printer._display_len("e\204\129"))   -- e and a combining acute accent
    assert.are.equal(8, printer._display_len("ｆｕｌｌ"))
    assert.are.equal(3, printer._display_len("\255ab"))        -- not UTF-8: a cell a byte
    assert.are.equal("日", printer._clip("日本語", 3))          -- a wide character fits whole or not at all
    local p, writes = capture(false)
    local t = p:add_table{ size = 3, columns = { "name", "n" } }
    add(t, { name = "東京", n = 1 }, nil, 0, 0)
    add(t, { name = "Zoë", n = 2 }, nil, 0, 0)
    add(t, { name = "😀😀😀", n = 3 }, nil, 0, 0)
    p:tick(0)
    assert.are.same({ "+--------+---+\n| name   | n |\n+--------+---+\n| 東京   | 1 |\n| Zoë    | 2 |\n"
      .. "| 😀😀😀 | 3 |\n+--------+---+" }, writes)
    -- cut to the terminal's width in cells
    local q, narrow = capture(false, 12)
    local t2 = q:add_table{ size = 1, column_widths = { name = 5 } }
    add(t2, { name = "日本語です" }, nil, 0, 0)
    q:tick(0)
    assert.truthy(narrow[1]:find("| 日本  |", 1, true), narrow[1])
  end)
  it("redraws in place on a terminal at most every live_slowdown, and once more at the end", function()
    local p, writes = capture(true)
    p:configure_live(nil, 0.5)
    local t = p:add_table{ size = 2 }
    add(t, { n = 1 }, nil, 0, 0); p:tick(0)
    add(t, { n = 2 }, nil, 0, 0.1); p:tick(0.1)    -- within live_slowdown: not yet
    add(t, { n = 3 }, nil, 0, 0.2); p:tick(0.2)
    assert.are.equal(1, #writes)
    p:tick(0.3, true)                                -- the run ends: drawn
    assert.are.equal(2, #writes)
    assert.truthy(writes[2]:find("^\27%[5A\r\27%[J"))
    assert.falsy(writes[2]:find("| 1 |", 1, true))
    assert.truthy(writes[2]:find("| 2 |\n| 3 |", 1, true))
    p:tick(5, true)                                  -- nothing new: nothing drawn
    assert.are.equal(2, #writes)
  end)
  it("is in place and shows every row through sdf:test", function()
    local app = qhost.Application{}
    local sdf = app:dataframe(app:topic("pt"))
    sdf:print_table{ metadata = false }
    sdf = sdf:apply(function(v) return v.n end)
    local out = sdf:test({ n = 4 })
    assert.are.same({ 4 }, out)      -- one branch: print_table did not make another
  end)
end)
