-- The user documentation and the code say the same thing.
-- docs/api.md is parsed: every level-3 heading is one code span holding a
-- call ("### `sdf:apply(fn, opts)`"); the options of a call are a table
-- headed `| option | type | default | meaning |` in its section; every
-- section has a ```lua example. This spec checks, both ways:
--   (a) every public method of the classes a pipeline author uses has a
--       heading, and every heading names something that exists;
--   (b) every call's documented options are exactly the options the code
--       declares (qhost.argcheck.specs), with the declared types, and the
--       defaults the code really sets where a default is a Lua literal;
--   (c) every ```lua example compiles, and every example that does not run
--       an app (no `app:run`) runs and prints what its `--> ` lines say;
--   (d) README.md and docs/ never point outside the repository, and their
--       links lead to files and headings that exist.
-- Run from the repository root (or with QHOST_TEST_ROOT set to it).
local qhost = require("qhost")
local argcheck = require("qhost.runtime.argcheck")
local sinks = require("qhost.sinks")
local stateful = require("qhost.sources.stateful")

local ROOT = os.getenv("QHOST_TEST_ROOT") or "."
local API = "docs/api.md"

local function read(path)
  local f = io.open(ROOT .. "/" .. path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

local function lines_of(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  if lines[#lines] == "" then lines[#lines] = nil end
  return lines
end

-- Parsing ------------------------------------------------------------------

-- Headings that are operators of StreamingSeries, by their exact text.
local OPERATORS = {
  ["series(value)"] = "__call", ["series + x"] = "__add", ["series - x"] = "__sub",
  ["series * x"] = "__mul", ["series / x"] = "__div", ["series % x"] = "__mod",
  ["series .. x"] = "__concat", ["-series"] = "__unm", ["tostring(series)"] = "__tostring",
}

local function call_name(text)
  if OPERATORS[text] then return text end
  return text:match("^[%a_][%w_%.:]*")
end

local function split_row(line)
  local cells = {}
  local body = line:match("^%s*|(.*)|%s*$")
  if not body then return nil end
  -- "\|" inside a cell is not a separator.
  body = body:gsub("\\|", "\0")
  for cell in (body .. "|"):gmatch("([^|]*)|") do
    cells[#cells + 1] = (cell:gsub("%z", "|"):match("^%s*(.-)%s*$"))
  end
  return cells
end

-- parse(text) -> { headings = list, by_name = map, blocks = list, problems = list }
-- A heading: { text, name, line, options = nil | { list, by_name }, examples = { code... } }.
local function parse(text)
  local doc = { headings = {}, by_name = {}, blocks = {}, problems = {} }
  local lines = lines_of(text)
  local current
  local i = 1
  while i <= #lines do
    local line = lines[i]
    local fence = line:match("^%s*```(%S*)")
    if fence then
      local start = i
      local body = {}
      i = i + 1
      while i <= #lines and not lines[i]:match("^%s*```%s*$") do
        body[#body + 1] = lines[i]
        i = i + 1
      end
      if i > #lines then doc.problems[#doc.problems + 1] = "unclosed code block at line " .. start end
      if fence == "lua" then
        local block = { code = table.concat(body, "\n"), line = start + 1, heading = current }
        doc.blocks[#doc.blocks + 1] = block
        if current then current.examples[#current.examples + 1] = block end
      end
    elseif line:match("^###%s") and not line:match("^####") then
      local span = line:match("^###%s+`([^`]+)`%s*$")
      if not span then
        doc.problems[#doc.problems + 1] = string.format("line %d: a level-3 heading must be one code span "
          .. "holding a call: %s", i, line)
        current = nil
      else
        local name = call_name(span)
        current = { text = span, name = name, line = i, examples = {} }
        doc.headings[#doc.headings + 1] = current
        if doc.by_name[name] then
          doc.problems[#doc.problems + 1] = string.format("line %d: %s has a heading already (line %d)", i, name,
            doc.by_name[name].line)
        end
        doc.by_name[name] = current
      end
    elseif line:match("^##?%s") then
      current = nil
    elseif current and line:match("^|%s*option%s*|%s*type%s*|%s*default%s*|%s*meaning%s*|") then
      if current.options then
        doc.problems[#doc.problems + 1] = string.format("line %d: %s has two option tables", i, current.name)
      end
      local options = { list = {}, by_name = {}, line = i }
      current.options = options
      i = i + 2   -- the header and the |---| line
      while i <= #lines and lines[i]:match("^%s*|") do
        local cells = split_row(lines[i])
        local name = cells and cells[1]:match("^`([^`]+)`$")
        if not name or #cells ~= 4 then
          doc.problems[#doc.problems + 1] = string.format("line %d: an option row is | `name` | type | default "
            .. "| meaning |: %s", i, lines[i])
        else
          if options.by_name[name] then
            doc.problems[#doc.problems + 1] = string.format("line %d: option %s twice", i, name)
          end
          local row = { name = name, type = cells[2], default = cells[3], line = i }
          options.list[#options.list + 1] = row
          options.by_name[name] = row
        end
        i = i + 1
      end
      i = i - 1
    end
    i = i + 1
  end
  return doc
end

local text = read(API)
local doc = text and parse(text) or { headings = {}, by_name = {}, blocks = {}, problems = {} }

-- What the headings name -----------------------------------------------------

local SDF = require("qhost.dataframe").StreamingDataFrame
local windows = require("qhost.windows")
require("qhost.joins")   -- declares the join options (loaded by the first join otherwise)
local WINDOW_CLASSES = { windows.Definition, windows.Window }
local agg = require("qhost.agg")
local App = require("qhost.app").ApplicationClass
local Series = require("qhost.series").Series
local State = stateful.State
local S = qhost.sources
local SOURCE_CLASSES = { S.Source, S.StatefulSource, S.CSVSource, S.KafkaReplicatorSource }
local SINK_CLASSES = { sinks.BaseSink, sinks.BatchingSink, sinks.CSVSink }
local LK = qhost.lookups
local LOOKUP_CLASSES = { LK.BaseLookup, LK.SQLiteLookup }
local FIELD_CLASSES = { LK.BaseField, LK.SQLiteLookupField, LK.SQLiteLookupQueryField }

-- The methods of sources and sinks that users override or call, by the
-- heading that documents them. Each must exist, and have its heading.
local EXTENSION_API = {
  ["Source:extend"] = { S.Source, "extend" },
  ["source:init"] = { S.Source, "init" },
  ["source:setup"] = { S.Source, "setup" },
  ["source:run"] = { S.Source, "run" },
  ["source:cleanup"] = { S.Source, "cleanup" },
  ["source:stop"] = { S.Source, "stop" },
  ["source:default_topic"] = { S.Source, "default_topic" },
  ["source:serialize"] = { S.Source, "serialize" },
  ["source:produce"] = { S.Source, "produce" },
  ["source:flush"] = { S.Source, "flush" },
  ["source:store_name"] = { S.StatefulSource, "store_name" },
  ["state:get"] = { State, "get" },
  ["state:set"] = { State, "set" },
  ["state:delete"] = { State, "delete" },
  ["state:exists"] = { State, "exists" },
  ["BaseSink:extend"] = { sinks.BaseSink, "extend" },
  ["sink:init"] = { sinks.BaseSink, "init" },
  ["sink:setup"] = { sinks.BaseSink, "setup" },
  ["sink:add"] = { sinks.BaseSink, "add" },
  ["sink:flush"] = { sinks.BaseSink, "flush" },
  ["sink:discard"] = { sinks.BaseSink, "discard" },
  ["sink:write"] = { sinks.BatchingSink, "write" },
}

-- Public names in the code that are not for pipeline authors, and why.
-- A new public method must be documented or listed here.
local INTERNAL = {
  ["source:changelog_topic"] = "StatefulSource: the app asks it for the changelog topic to create",
  ["source:source_consumer_group"] = "KafkaReplicatorSource: its group name, described in its section",
  ["source:target_consumer_group"] = "KafkaReplicatorSource: its checkpoint group, described in its section",
  ["qhost.sinks.is_sink"] = "the check sdf:sink makes",
  ["qhost.lookups.is_lookup"] = "the check sdf:join_lookup makes",
  ["qhost.lookups.is_field"] = "the check lookup:check_fields makes",
  ["field:build_query"] = "SQLite fields: the query SQLiteLookup runs (described with the fields)",
  ["field:result"] = "SQLite fields: the value SQLiteLookup sets from the rows (described with the fields)",
}

local function has_method(classes, name)
  for _, cls in ipairs(classes) do
    if type(cls[name]) == "function" then return true end
  end
  return false
end

-- Whether the thing a heading names exists; nil, why when it does not.
local function exists(name)
  local op = OPERATORS[name]
  if op then
    if type(rawget(Series, op)) == "function" then return true end
    return nil, "StreamingSeries has no metamethod " .. op
  end
  local prefix, method = name:match("^([%w_]+):([%w_]+)$")
  if prefix then
    local classes = ({
      sdf = { SDF }, app = { App }, series = { Series }, source = SOURCE_CLASSES, Source = { S.Source },
      state = { State }, sink = SINK_CLASSES, BaseSink = { sinks.BaseSink }, window = WINDOW_CLASSES,
      aggregator = { agg.Aggregator }, Aggregator = { agg.Aggregator }, collector = { agg.Collector },
      Collector = { agg.Collector }, lookup = LOOKUP_CLASSES, BaseLookup = { LK.BaseLookup },
      field = FIELD_CLASSES, BaseField = { LK.BaseField },
    })[prefix]
    if not classes then return nil, "unknown receiver " .. prefix .. ": (add it to docs_spec.lua)" end
    if prefix == "sdf" or prefix == "app" or prefix == "series" or prefix == "window" then
      -- rawget: these classes raise on a name they do not have.
      for _, cls in ipairs(classes) do
        if type(rawget(cls, method)) == "function" then return true end
      end
      return nil, "the class has no method " .. method
    end
    if has_method(classes, method) then return true end
    return nil, "no " .. prefix .. " class has a method " .. method
  end
  if name:match("^qhost%.") then
    local value = qhost
    for part in name:sub(7):gmatch("[^%.]+") do
      if type(value) ~= "table" then return nil, "not a table before " .. part end
      value = rawget(value, part)
      if value == nil then return nil, "qhost has no " .. name end
    end
    return true
  end
  return nil, "not a name this spec knows how to check"
end

local function public_functions(cls)
  local names = {}
  for k, v in pairs(cls) do
    if type(k) == "string" and type(v) == "function" and not k:find("^_") then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

local function documented(name)
  return doc.by_name[name] ~= nil or INTERNAL[name] ~= nil
end

-- Fails the test with every problem found, one per line.
local function fail_all(problems)
  assert.is_true(#problems == 0, "\n" .. table.concat(problems, "\n"))
end

describe("docs/api.md", function()
  it("exists and parses: level-3 headings are single code spans, one per call, each with a lua example", function()
    assert.truthy(text, ROOT .. "/" .. API .. " is missing (run from the repository root or set QHOST_TEST_ROOT)")
    local problems = {}
    for _, p in ipairs(doc.problems) do problems[#problems + 1] = p end
    assert.is_true(#doc.headings > 50, "too few headings: the parser found " .. #doc.headings)
    for _, h in ipairs(doc.headings) do
      if #h.examples == 0 then
        problems[#problems + 1] = string.format("line %d: %s has no ```lua example", h.line, h.text)
      end
    end
    fail_all(problems)
  end)

  it("names only things that exist", function()
    local problems = {}
    for _, h in ipairs(doc.headings) do
      local ok, why = exists(h.name)
      if not ok then problems[#problems + 1] = string.format("line %d: %s: %s", h.line, h.text, why) end
      if INTERNAL[h.name] then
        problems[#problems + 1] = string.format("line %d: %s is documented but listed as INTERNAL in the spec",
          h.line, h.name)
      end
    end
    fail_all(problems)
  end)

  it("documents every public method of StreamingDataFrame, Application and StreamingSeries", function()
    local problems = {}
    for _, pair in ipairs({ { SDF, "sdf" }, { App, "app" }, { Series, "series" } }) do
      for _, name in ipairs(public_functions(pair[1])) do
        if not documented(pair[2] .. ":" .. name) then
          problems[#problems + 1] = "no heading for " .. pair[2] .. ":" .. name
        end
      end
    end
    -- Series' metamethods: each one the class has is an operator with its heading.
    local operator_of = {}
    for heading, meta in pairs(OPERATORS) do operator_of[meta] = heading end
    for k, v in pairs(Series) do
      if type(k) == "string" and k:find("^__") and type(v) == "function" then
        if not operator_of[k] then
          problems[#problems + 1] = "StreamingSeries has the metamethod " .. k .. ": add its operator to OPERATORS "
            .. "in docs_spec.lua and a heading to docs/api.md"
        elseif not doc.by_name[operator_of[k]] then
          problems[#problems + 1] = "no heading for " .. operator_of[k] .. " (" .. k .. ")"
        end
      end
    end
    fail_all(problems)
  end)

  it("documents the methods of sources, sinks, windows and aggregators that users override or call", function()
    local problems = {}
    for heading, target in pairs(EXTENSION_API) do
      if type(target[1][target[2]]) ~= "function" then
        problems[#problems + 1] = string.format("the code has no %s (documented as %s)", target[2], heading)
      end
      if not doc.by_name[heading] then problems[#problems + 1] = "no heading for " .. heading end
    end
    -- Every public method of these classes is documented or INTERNAL (an
    -- override is documented by the heading of the method it overrides).
    local groups = {
      { SOURCE_CLASSES, { "source", "Source" } },
      { SINK_CLASSES, { "sink", "BaseSink" } },
      { { State }, { "state" } },
      { WINDOW_CLASSES, { "window" } },
      { { agg.Aggregator }, { "aggregator", "Aggregator" } },
      { { agg.Collector }, { "collector", "Collector" } },
      { LOOKUP_CLASSES, { "lookup", "BaseLookup" } },
      { FIELD_CLASSES, { "field", "BaseField" } },
    }
    for _, group in ipairs(groups) do
      for _, cls in ipairs(group[1]) do
        for _, name in ipairs(public_functions(cls)) do
          local ok = false
          for _, prefix in ipairs(group[2]) do ok = ok or documented(prefix .. ":" .. name) end
          if not ok then
            problems[#problems + 1] = string.format("%s.%s has no heading (%s:%s)", tostring(rawget(cls, "__name")),
              name, group[2][1], name)
          end
        end
      end
    end
    fail_all(problems)
  end)

  it("documents everything in the qhost module table", function()
    local problems = {}
    for key, value in pairs(qhost) do
      local name = "qhost." .. key
      if not documented(name) then
        if type(value) == "table" then
          -- A namespace: each of its names has its heading.
          for sub in pairs(value) do
            if not documented(name .. "." .. sub) then problems[#problems + 1] = "no heading for " .. name .. "." .. sub end
          end
        else
          problems[#problems + 1] = "no heading for " .. name
        end
      end
    end
    fail_all(problems)
  end)
end)

-- Options ---------------------------------------------------------------------

-- The heading of the call a spec name declares ("sdf:print", "CSVSource").
local function heading_of_spec(spec_name)
  local found = {}
  for _, candidate in ipairs({ spec_name, "qhost." .. spec_name, "qhost.sources." .. spec_name,
                               "qhost.sinks." .. spec_name, "qhost.lookups." .. spec_name }) do
    if doc.by_name[candidate] then found[#found + 1] = doc.by_name[candidate] end
  end
  if #found == 1 then return found[1] end
  return nil, #found == 0 and "no heading" or "several headings"
end

-- The instance whose fields hold a call's defaults, for the calls that
-- keep their options as fields.
local FACTORIES = {
  Application = function() return qhost.Application{} end,
  TopicConfig = function() return qhost.TopicConfig{} end,
  Source = function()
    local Plain = S.Source:extend("DocsPlain")
    return Plain{ name = "docs" }
  end,
  CSVSource = function() return S.CSVSource{ path = "docs/input.csv" } end,
  KafkaReplicatorSource = function()
    return S.KafkaReplicatorSource{ name = "docs", topic = "t", broker_address = "127.0.0.1:1" }
  end,
  CSVSink = function() return sinks.CSVSink{ path = "docs.csv" } end,
  SQLiteLookupField = function() return LK.SQLiteLookupField{ table = "t", columns = { "a" }, on = "id" } end,
  SQLiteLookupQueryField = function() return LK.SQLiteLookupQueryField{ query = "SELECT 1" } end,
}

local function deep_equal(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- A default cell that is exactly one code span holding a Lua literal.
local function literal_default(cell)
  local code = cell:match("^`([^`]+)`$")
  if not code then return nil end
  local chunk = loadstring("return " .. code)
  if not chunk then return nil end
  local ok, value = pcall(setfenv(chunk, {}))
  if ok and value ~= nil then return true, value end
  return nil
end

describe("options in docs/api.md", function()
  it("declared by the code are exactly those documented, both ways, with their types", function()
    local problems = {}
    local names = {}
    for name in pairs(argcheck.specs) do names[#names + 1] = name end
    table.sort(names)
    assert.is_true(#names >= 18, "argcheck.specs holds only " .. #names .. " calls")
    local claimed = {}
    for _, spec_name in ipairs(names) do
      local spec = argcheck.specs[spec_name]
      local h, why = heading_of_spec(spec_name)
      if not h then
        problems[#problems + 1] = string.format("the code declares options for %s: %s in %s", spec_name, why, API)
      elseif not h.options then
        problems[#problems + 1] = string.format("%s (line %d) has no | option | type | default | meaning | table",
          h.text, h.line)
      else
        claimed[h] = true
        for option, rule in pairs(spec) do
          local row = h.options.by_name[option]
          if not row then
            problems[#problems + 1] = string.format("%s: option %s is not documented", h.name, option)
          elseif type(rule) == "string" and rule ~= "any" then
            for want in rule:gmatch("[^|]+") do
              if not row.type:find(want, 1, true) then
                problems[#problems + 1] = string.format("%s: option %s is %s in the code, documented as %q",
                  h.name, option, rule, row.type)
              end
            end
          elseif rule == "any" and not row.type:find("any", 1, true) then
            problems[#problems + 1] = string.format("%s: option %s takes any value, documented as %q", h.name,
              option, row.type)
          end
        end
        for _, row in ipairs(h.options.list) do
          if spec[row.name] == nil then
            problems[#problems + 1] = string.format("%s (line %d): option %s is documented but the code does not "
              .. "take it", h.name, row.line, row.name)
          end
        end
      end
    end
    for _, h in ipairs(doc.headings) do
      if h.options and not claimed[h] then
        problems[#problems + 1] = string.format("%s (line %d) documents options but the code declares none for it",
          h.name, h.line)
      end
    end
    fail_all(problems)
  end)

  it("defaults written as Lua literals are the ones the code sets", function()
    local problems = {}
    local checked = 0
    for spec_name, factory in pairs(FACTORIES) do
      local h = heading_of_spec(spec_name)
      if h and h.options then
        local instance = factory()
        for _, row in ipairs(h.options.list) do
          local ok, value = literal_default(row.default)
          if ok then
            checked = checked + 1
            local actual = rawget(instance, row.name)
            if not deep_equal(value, actual) then
              problems[#problems + 1] = string.format("%s: option %s is documented with default %s, the code sets %s",
                h.name, row.name, row.default, tostring(actual))
            end
          end
        end
      end
    end
    assert.is_true(checked >= 15, "only " .. checked .. " defaults checked")
    fail_all(problems)
  end)
end)

-- Examples ------------------------------------------------------------------

-- Runs an example as the script app.lua would run; returns its output
-- lines (print and io.stdout), or nil, err.
local function run_example(code)
  local chunk, err = loadstring(code, "=app.lua")
  if not chunk then return nil, err end
  local out = {}
  local env = setmetatable({
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      out[#out + 1] = table.concat(parts, "\t") .. "\n"
    end,
  }, { __index = _G })
  setfenv(chunk, env)
  local real = io.stdout
  io.stdout = { write = function(self, ...) -- luacheck: ignore self
    for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
    return self
  end, flush = function(self) return self end }
  local ok, run_err = pcall(chunk)
  io.stdout = real
  if not ok then return nil, tostring(run_err) end
  local all = table.concat(out)
  if all == "" then return {} end
  return lines_of(all)
end

local function expected_output(code)
  local want = {}
  for _, line in ipairs(lines_of(code)) do
    local shown = line:match("^%s*%-%->%s?(.*)$")
    if shown then want[#want + 1] = shown end
  end
  return want
end

local function docs_files()
  local files = { "README.md" }
  local p = io.popen("ls '" .. ROOT .. "/docs'")
  for name in p:lines() do
    if name:match("%.md$") then files[#files + 1] = "docs/" .. name end
  end
  p:close()
  return files
end

describe("examples", function()
  it("every ```lua block of README.md and docs/ compiles", function()
    local problems = {}
    local count = 0
    for _, file in ipairs(docs_files()) do
      local parsed = parse(read(file) or "")
      for _, block in ipairs(parsed.blocks) do
        count = count + 1
        local ok, err = loadstring(block.code, "=" .. file .. ":" .. block.line)
        if not ok then problems[#problems + 1] = err end
      end
    end
    assert.is_true(count > 50, "only " .. count .. " lua blocks found")
    fail_all(problems)
  end)

  it("in docs/api.md run and print what their --> lines say (those that do not call app:run)", function()
    local problems = {}
    local ran = 0
    for _, block in ipairs(doc.blocks) do
      local where = string.format("%s:%d (%s)", API, block.line, block.heading and block.heading.text or "?")
      local want = expected_output(block.code)
      if block.code:find("app:run", 1, true) then
        if #want > 0 then
          problems[#problems + 1] = where .. ": an example that runs an app cannot show --> output (it is not run)"
        end
      else
        ran = ran + 1
        local got, err = run_example(block.code)
        if not got then
          problems[#problems + 1] = where .. ": raised " .. err
        elseif not deep_equal(got, want) then
          problems[#problems + 1] = string.format("%s: printed\n  %s\nbut its --> lines say\n  %s", where,
            table.concat(got, "\n  "), table.concat(want, "\n  "))
        end
      end
    end
    assert.is_true(ran > 40, "only " .. ran .. " examples ran")
    fail_all(problems)
  end)
end)

-- Links -----------------------------------------------------------------------

-- GitHub's anchor of a heading: lower case, punctuation dropped, spaces to -.
local function anchor(heading)
  local s = heading:lower():gsub("[^%w%s%-_]", ""):gsub("%s", "-")
  return s
end

local function anchors_of(text_of_file)
  local set = {}
  local in_code = false
  for _, line in ipairs(lines_of(text_of_file)) do
    if line:match("^%s*```") then in_code = not in_code end
    local heading = not in_code and line:match("^#+%s+(.-)%s*$")
    if heading then set[anchor(heading)] = true end
  end
  return set
end

local function resolve(dir, target)
  local parts = {}
  for part in (dir .. "/" .. target):gmatch("[^/]+") do
    if part == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return table.concat(parts, "/")
end

describe("README.md and docs/", function()
  it("are self-contained: no ../shared, links to files and headings of the repository that exist", function()
    local problems = {}
    for _, file in ipairs(docs_files()) do
      local body = read(file)
      assert.truthy(body, file .. " is missing")
      if body:find("../shared", 1, true) or body:find("shared/API.md", 1, true)
        or body:find("shared/DESIGN.md", 1, true) then
        problems[#problems + 1] = file .. " refers to ../shared, which a clone of the repository does not have"
      end
      local dir = file:match("^(.*)/[^/]*$") or ""
      local in_code = false
      for n, line in ipairs(lines_of(body)) do
        if line:match("^%s*```") then in_code = not in_code end
        if not in_code then
          for target in line:gmatch("%]%(([^)%s]+)%)") do
            if not target:match("^%a[%w+.-]*:") then          -- not http:, https:, mailto:
              local path, frag = target:match("^([^#]*)#?(.*)$")
              local resolved = path == "" and file or resolve(dir, path)
              local linked = resolved and read(resolved)
              if not resolved then
                problems[#problems + 1] = string.format("%s:%d: %s points outside the repository", file, n, target)
              elseif not linked and not io.open(ROOT .. "/" .. resolved .. "/.") then
                problems[#problems + 1] = string.format("%s:%d: %s does not exist", file, n, target)
              elseif frag ~= "" and linked and not anchors_of(linked)[frag] then
                problems[#problems + 1] = string.format("%s:%d: %s has no heading #%s", file, n, resolved, frag)
              end
            end
          end
        end
      end
    end
    fail_all(problems)
  end)
end)
