-- Conformance with Quix Streams, the window algorithms themselves: random
-- cases (every kind of window and aggregation, final and current, both
-- closing strategies, triggers, several keys, out-of-order and late
-- messages, checkpoints at random places) go message by message through
-- Quix's own window classes on its windowed RocksDB store
-- (windows/quix_side.py) and through qhost's (windows/qhost_side.lua).
-- Every message must give the same results (key, value with its keys in
-- the same order, timestamp) in the same order, and the same late
-- messages; a case that fails in Quix must fail in qhost. No Kafka needed:
-- only QHOST_QUIX_PYTHON (a Python with quixstreams, tests/quix-venv.sh).
local H = require("helper")
local compare = dofile((os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/compare.lua")
local json = require("qhost").json
local codec = require("qhost.codec")

local HERE = (os.getenv("QHOST_TEST_ROOT") or ".") .. "/tests/conformance/windows/"
local PYTHON = os.getenv("QHOST_QUIX_PYTHON")

local KINDS = { "tumbling", "hopping", "sliding", "tumbling_count", "hopping_count", "sliding_count" }
local AGGS = { "sum", "count", "mean", "min", "max", "collect", "reduce", "multi", "multi_collect" }

local function pick(list) return list[math.random(#list)] end

-- A random case (see quix_side.py for its fields).
local function make_case()
  local kind, agg = pick(KINDS), pick(AGGS)
  local mode = pick({ "final", "current" })
  if agg == "collect" or agg == "multi_collect" then mode = "final" end
  local case = { kind = kind, agg = agg, mode = mode, closing = "key", trigger = json.null, step = json.null,
    count = json.null, duration = pick({ 5, 10, 20 }), grace = pick({ 0, 0, 2, 5 }) }
  if kind == "hopping" then
    local steps = {}
    for _, s in ipairs({ 2, 3, 5, 7 }) do if s < case.duration then steps[#steps + 1] = s end end
    case.step = pick(steps)
  end
  if kind:find("count") then
    case.count = pick({ 2, 3, 4 })
    if kind == "hopping_count" then case.step = pick({ 1, 2, 3 }) end
  end
  if (kind == "tumbling" or kind == "hopping") and math.random() < 0.5 then case.closing = "partition" end
  if (kind == "tumbling" or kind == "hopping") and math.random() < 0.3 then
    local when = pick({ "before", "after" })
    if agg == "collect" then case.trigger = { when = when, op = "len_ge", t = pick({ 2, 3 }) }
    elseif agg == "sum" or agg == "count" then
      case.trigger = { when = when, op = pick({ "state_ge", "value_gt" }), t = pick({ 5, 8 }) }
    elseif agg == "reduce" then case.trigger = { when = when, op = "value_gt", t = 6 } end
  end
  local keys = pick({ 1, 2, 3, 6 })
  local t = pick({ math.random(0, 30), 1700000000000 + math.random(0, 999) })
  local messages = {}
  for i = 1, math.random(5, 80) do
    t = math.max(0, t + pick({ 0, 1, 2, 3, 5, 8, -3, -7, 13 }))
    local value = math.random(0, 9)
    if agg == "multi" or agg == "multi_collect" then
      value = { x = math.random(0, 9) }
      if math.random() < 0.7 then value.y = math.random(0, 9) end
    end
    messages[i] = { "k" .. math.random(0, keys - 1), value, t }
  end
  case.messages = messages
  local checkpoints = setmetatable({}, codec.array_mt)
  for i = 0, #messages - 1 do
    if math.random() < 0.12 then checkpoints[#checkpoints + 1] = i end
  end
  case.checkpoints = checkpoints
  return case
end

describe("conformance with Quix Streams: window algorithms", function()
  it("give the same results, message by message, on random cases", function()
    if not PYTHON then pending("needs QHOST_QUIX_PYTHON (a Python with quixstreams)") return end
    local dir = H.tmpdir()
    local seed = tonumber(os.getenv("QHOST_WINDOW_SEED") or "") or os.time()
    math.randomseed(seed)
    local lines = {}
    for i = 1, tonumber(os.getenv("QHOST_WINDOW_CASES") or "300") do lines[i] = json.encode(make_case()) end
    H.write(dir .. "/cases.jsonl", table.concat(lines, "\n") .. "\n")
    os.execute("mkdir -p " .. H.quote(dir .. "/quix") .. " " .. H.quote(dir .. "/qhost"))
    local out = H.exec(string.format("cd %s && PYTHONWARNINGS=ignore %s %s %s < cases.jsonl > quix.jsonl 2> quix.err; "
      .. "echo rc=$?", H.quote(dir), H.quote(PYTHON), H.quote(HERE .. "quix_side.py"), H.quote(dir .. "/quix")))
    assert.truthy(out:find("rc=0"), out .. (H.read(dir .. "/quix.err") or ""))
    out = H.exec(string.format("cd %s && %s lua %s %s < cases.jsonl > qhost.jsonl 2> qhost.err; echo rc=$?",
      H.quote(dir), H.quote(H.qhost), H.quote(HERE .. "qhost_side.lua"), H.quote(dir .. "/qhost")))
    assert.truthy(out:find("rc=0"), out .. (H.read(dir .. "/qhost.err") or ""))
    local quix, ours = H.lines(H.read(dir .. "/quix.jsonl")), H.lines(H.read(dir .. "/qhost.jsonl"))
    assert.are.equal(#lines, #quix)
    assert.are.equal(#lines, #ours)
    local results, errors = 0, 0
    for i = 1, #lines do
      local q, o = json.decode(quix[i]), json.decode(ours[i])
      local where = string.format("seed %d, case %d: %s", seed, i, lines[i])
      if q.error ~= nil then
        errors = errors + 1
        assert.truthy(o.error ~= nil, where .. "\nQuix failed (" .. tostring(q.error) .. "), qhost did not")
      else
        assert.is_nil(o.error, where .. "\nqhost failed: " .. tostring(o.error))
        for m = 1, #q do
          results = results + #q[m].r
          assert.is_true(compare.same(q[m], o[m]), string.format("%s\nmessage %d: Quix %s\nqhost %s", where, m,
            json.encode(q[m]), json.encode(o[m])))
        end
      end
    end
    assert.is_true(results > 1000, "only " .. results .. " results compared")
    assert.is_true(errors < #lines / 10, errors .. " cases failed in Quix")
  end)
end)
