-- CSVSource on real-world CSV: quoting, line endings, empty fields,
-- unicode, extractors, dialects, and malformed files.
local H = require("helper")
local json = require("qhost").json

-- Runs a CSVSource over `csv` with `opts` (Lua table text) and returns the
-- printed lines parsed, plus the run result.
local function run_csv(csv, opts, count)
  local dir = H.tmpdir()
  local name = H.unique("csv")
  H.write(dir .. "/data.csv", csv)
  H.write(dir .. "/app.lua", string.format([[
    local qhost = require("qhost")
    local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
    local source = qhost.sources.CSVSource{ path = "data.csv", name = %q %s }
    local sdf = app:dataframe{ source = source }
    sdf:print{ pretty = false, metadata = true }
    app:run{ count = %d, timeout = 20 }
  ]], name, name, opts and (", " .. opts) or "", count))
  local r = H.run(dir, "app.lua")
  return H.json_lines(r.stdout), r
end

describe("CSVSource #" .. H.mode, function()
  it("reads RFC 4180 quoting: commas, quotes and newlines inside fields, CRLF", function()
    local csv = 'id,text,note\r\n1,"a, b","say ""hi"""\r\n2,"line1\r\nline2",plain\r\n3,,\r\n'
    local rows, r = run_csv(csv, nil, 3)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(3, #rows)
    assert.are.same({ id = "1", text = "a, b", note = 'say "hi"' }, rows[1].value)
    assert.are.same({ id = "2", text = "line1\r\nline2", note = "plain" }, rows[2].value)
    assert.are.same({ id = "3", text = "", note = "" }, rows[3].value)
    assert.truthy(r.stdout:find('{"value":{"id":"1","text":"a, b","note":"say \\"hi\\""}', 1, true), r.stdout)
  end)

  it("keeps unicode and a final line without newline", function()
    local rows, r = run_csv("name,city\nJosé,Zürich\n李,東京", nil, 2)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ name = "José", city = "Zürich" }, rows[1].value)
    assert.are.same({ name = "李", city = "東京" }, rows[2].value)
  end)

  it("uses key and timestamp extractors by column name", function()
    local rows, r = run_csv("id,ts,v\nk1,1700000000000,a\nk2,1700000000001,b\n",
      'key_extractor = "id", timestamp_extractor = "ts"', 2)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("k1", rows[1].key)
    assert.are.equal(1700000000000, rows[1].timestamp)
    assert.are.equal("k2", rows[2].key)
    assert.are.equal(1700000000001, rows[2].timestamp)
  end)

  it("uses key and timestamp extractor functions (without upvalues)", function()
    local rows, r = run_csv("id,ts\n7,5000\n",
      'key_extractor = function(row) return "id-" .. row.id end, '
      .. 'timestamp_extractor = function(row) return tonumber(row.ts) * 2 end', 1)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("id-7", rows[1].key)
    assert.are.equal(10000, rows[1].timestamp)
  end)

  it("reads other delimiters, quote characters and the excel-tab dialect", function()
    local rows, r = run_csv("a;b\n'x;y';z\n", 'delimiter = ";", quotechar = "\'"', 1)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ a = "x;y", b = "z" }, rows[1].value)
    rows, r = run_csv("a\tb\n1\t2\n", 'dialect = "excel-tab"', 1)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ a = "1", b = "2" }, rows[1].value)
  end)

  it("paces rows with delay", function()
    local rows, r = run_csv("n\n1\n2\n3\n", "delay = 0.2", 3)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(3, #rows)
    assert.are.same({ "1", "2", "3" }, { rows[1].value.n, rows[2].value.n, rows[3].value.n })
    -- Each row is produced (and stamped) at least `delay` after the one
    -- before: a lower bound that sleeping guarantees, whatever the load.
    for i = 2, 3 do
      local gap = rows[i].timestamp - rows[i - 1].timestamp
      assert.is_true(gap >= 195, "rows " .. (i - 1) .. " and " .. i .. " are " .. gap .. " ms apart")
    end
  end)

  it("ends with an error naming the file and line of a malformed row", function()
    local _, r = run_csv('a,b\n1,2\n3,"unterminated\n', nil, 5)
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:find("CSVSource '[^']+' %(pid %d+%) failed with exit code 1"), r.stderr)
    assert.truthy(r.stderr:find("data.csv:3:", 1, true), r.stderr)
  end)

  -- Rows without extractors go from the reader's buffer to the producer
  -- without a Lua string; a bad field or header still ends the run naming
  -- file, line and column.
  it("ends with an error naming the file, line and column of a field or header that is not UTF-8", function()
    local _, r = run_csv("a,b\n1,2\n3,\255\n5,6\n", nil, 1)
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:find("data.csv:3: invalid UTF-8 in field 2", 1, true), r.stderr)
    local _, hr = run_csv("a,\255\n1,2\n", nil, 1)
    assert.are_not.equal(0, hr.code)
    assert.truthy(hr.stderr:find("data.csv: invalid UTF-8 in header column 2", 1, true), hr.stderr)
  end)

  it("hands each row's JSON text to the produce of a subclass that has its own", function()
    local dir = H.tmpdir()
    local name = H.unique("sub")
    H.write(dir .. "/data.csv", "a,b\n1,x\n22,yy\n")
    H.write(dir .. "/app.lua", string.format([[
      local qhost = require("qhost")
      local Keyed = qhost.sources.CSVSource:extend("Keyed")
      function Keyed:produce(msg)
        msg.key = type(msg.value) .. #msg.value
        qhost.sources.Source.produce(self, msg)
      end
      local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
      local sdf = app:dataframe{ source = Keyed{ path = "data.csv", name = %q } }
      sdf:print{ pretty = false, metadata = true }
      app:run{ count = 2, timeout = 20 }
    ]], name, name))
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    local rows = H.json_lines(r.stdout)
    assert.are.same({ "string17", "string19" }, { rows[1].key, rows[2].key })
    assert.are.same({ a = "22", b = "yy" }, rows[2].value)
  end)

  -- librdkafka took a timestamp of 0 or less as "now" and cut fractions;
  -- a table key was written as "table: 0x...".
  it("ends with an error naming file and line of a timestamp or key the extractors cannot give", function()
    for _, case in ipairs({
      { "id,ts\nk1,5\nk2,-5\n", 'timestamp_extractor = "ts"', 'data.csv:3: timestamp "-5" is not a whole number' },
      { "id,ts\nk1,0x10\n", 'timestamp_extractor = "ts"', 'data.csv:2: timestamp "0x10" is not a whole number' },
      { "id,ts\nk1,1.5\n", 'timestamp_extractor = "ts"', 'data.csv:2: timestamp "1.5" is not a whole number' },
      { "id,ts\nk1,1\n", "timestamp_extractor = function() return 0/0 end", "data.csv:2: timestamp " },
      { "id,ts\nk1,1\n", "key_extractor = function(row) return { row.id } end",
        "data.csv:2: key_extractor returned a table, not a string" },
    }) do
      local _, r = run_csv(case[1], case[2], 5)
      assert.are_not.equal(0, r.code, case[2])
      assert.truthy(r.stderr:find(case[3], 1, true), r.stderr)
    end
  end)

  it("ends with an error for a header that names a column twice; refuses delimiter = quotechar at once", function()
    local _, r = run_csv("a,a,b\n1,2,3\n", nil, 5)
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:find('data.csv:1: the header names column "a" twice (columns 1 and 2)', 1, true), r.stderr)
    _, r = run_csv("a\n1\n", "delimiter = '\"'", 5)
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:find("app.lua:3: CSVSource '[^']+': delimiter and quotechar must differ"), r.stderr)
    assert.falsy(r.stderr:find("started", 1, true), r.stderr)
  end)

  it("ends with an error naming a missing file", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", [[
      local qhost = require("qhost")
      local app = qhost.Application{}
      app:add_source(qhost.sources.CSVSource{ path = "nope.csv", name = "]] .. H.unique("nope") .. [[" })
      app:run()
    ]])
    local r = H.run(dir, "app.lua")
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:find("nope.csv", 1, true), r.stderr)
    assert.truthy(r.stderr:find("No such file or directory", 1, true), r.stderr)
  end)

  it("gives missing fields of short rows as null and skips a BOM", function()
    local rows, r = run_csv("\239\187\191a,b,c\n1,2\n4,5,6\n", nil, 2)
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find('{"value":{"a":"1","b":"2","c":null}', 1, true), r.stdout)
    assert.are.same({ a = "4", b = "5", c = "6" }, rows[2].value)
  end)

  it("ends a header-only file cleanly without producing anything", function()
    local dir = H.tmpdir()
    H.write(dir .. "/data.csv", "a,b,c\n")
    H.write(dir .. "/app.lua", [[
      local qhost = require("qhost")
      local app = qhost.Application{}
      app:add_source(qhost.sources.CSVSource{ path = "data.csv", name = "]] .. H.unique("hdr") .. [[" })
      app:run()
      print("done")
    ]])
    local r = H.run(dir, "app.lua")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("done\n", r.stdout)
    assert.truthy(r.stderr:find("%(pid %d+%) ended"), r.stderr)
  end)

  it("delivers every row of a CSV larger than the embedded broker keeps, to a slow pipeline", function()
    local dir = H.tmpdir()
    local name = H.unique("big")
    local f = assert(io.open(dir .. "/data.csv", "wb"))
    f:write("id,payload\n")
    local pad = string.rep("x", 70)
    for i = 0, 149999 do f:write(i, ",", pad, "\n") end
    f:close()
    H.write(dir .. "/app.lua", string.format([[
      local qhost = require("qhost")
      local app = qhost.Application{ consumer_group = %q, auto_offset_reset = "earliest" }
      local sdf = app:dataframe{ source = qhost.sources.CSVSource{ path = "data.csv", name = %q } }
      local seen, distinct = {}, 0
      sdf = sdf:apply(function(v)
        local x = 0
        for i = 1, 5000 do x = x + i end   -- slower than the source
        local id = tonumber(v.id)
        if not seen[id] then seen[id] = true; distinct = distinct + 1 end
        return id
      end)
      local out = app:run{ count = 150000, timeout = 30 }
      print(#out, distinct)
    ]], name, name))
    local r = H.run(dir, "app.lua", { timeout = 300 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("150000\t150000\n", r.stdout)
    assert.falsy(r.stderr:find("DATA LOST", 1, true), r.stderr)
  end)
end)
