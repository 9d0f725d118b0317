-- The qhost side of the window algorithm comparison (windows_diff_spec.lua):
-- the same cases as quix_side.py through qhost's windows, on a RocksDB
-- window store, with a checkpoint (flush) where the case says.
--   qhost lua qhost_side.lua STATE_DIR < cases.jsonl > results.jsonl
local qhost = require("qhost")
local dataframe = require("qhost.dataframe")
local partition = require("qhost.runtime.state.partition")
local windowed = require("qhost.runtime.state.windowed")
local json = qhost.json

local state_dir = arg[1]

local function trigger(spec)
  if spec == nil or spec == json.null then return nil end
  local op, t = spec.op, spec.t
  return function(aggregated, value)
    if op == "state_ge" then return aggregated >= t end
    if op == "value_gt" then return value > t end
    if op == "len_ge" then return #aggregated >= t end
    error(op)
  end
end

local function make_window(case, late_log)
  local sdf = dataframe.new(nil, { name = "t" })
  local trig = case.trigger ~= json.null and case.trigger or {}
  local before = trig.when == "before" and trigger(trig) or nil
  local after = trig.when == "after" and trigger(trig) or nil
  local function on_late(_, key, ts, late_by, s, e)
    late_log[#late_log + 1] = { key, ts, late_by, s, e }
    return false
  end
  local kind, w = case.kind, nil
  if kind == "tumbling" then
    w = sdf:tumbling_window{ duration_ms = case.duration, grace_ms = case.grace, on_late = on_late,
      before_update = before, after_update = after }
  elseif kind == "hopping" then
    w = sdf:hopping_window{ duration_ms = case.duration, grace_ms = case.grace, step_ms = case.step,
      on_late = on_late, before_update = before, after_update = after }
  elseif kind == "sliding" then
    w = sdf:sliding_window{ duration_ms = case.duration, grace_ms = case.grace, on_late = on_late }
  elseif kind == "tumbling_count" then
    w = sdf:tumbling_count_window{ count = case.count }
  elseif kind == "hopping_count" then
    w = sdf:hopping_count_window{ count = case.count, step = case.step }
  elseif kind == "sliding_count" then
    w = sdf:sliding_count_window{ count = case.count }
  end
  local a = case.agg
  local A = qhost.agg
  if a == "reduce" then
    return w:reduce(function(acc, v) acc[#acc + 1] = v; return acc end, function(v) return { v } end)
  elseif a == "multi" then
    return w:agg{ early = A.Earliest("x"), first = A.First("x"), last = A.Last("y"), latest = A.Latest("x"),
      mean = A.Mean("x"), mn = A.Min("y"), mx = A.Max("x"), n = A.Count(), ny = A.Count("y"), s = A.Sum("x") }
  elseif a == "multi_collect" then
    return w:agg{ n = A.Count(), s = A.Sum("x"), all = A.Collect(), xs = A.Collect("x") }
  end
  return w[a](w)
end

local function run(case, n)
  local late_log = {}
  local window = make_window(case, late_log)
  local opts = {}
  if case.closing and case.closing ~= "key" then opts.closing_strategy = case.closing end
  local sdf = case.mode == "final" and window:final(opts) or window:current(opts)
  local win = sdf.node.window
  local dir = string.format("%s/case%d", state_dir, n)
  os.execute("rm -rf '" .. dir .. "'")
  local part = partition.open(dir)
  local tx = windowed.new(part)
  local results
  local rt = { ctx = { topic = "t", partition = 0, offset = 0 },
    window_tx = function() return function() return tx end end }
  local process = win:_compile(function(value, key, ts) results[#results + 1] = { key, value, ts } end, rt)
  local checkpoints = {}
  for _, i in ipairs(case.checkpoints) do checkpoints[i] = true end
  local out = {}
  for i, m in ipairs(case.messages) do
    rt.ctx.offset = i - 1
    results = {}
    for k in pairs(late_log) do late_log[k] = nil end
    process(m[2], m[1], m[3], nil)
    local late = {}
    for j, l in ipairs(late_log) do late[j] = l end
    out[i] = setmetatable({ r = results, late = late }, { __qhost_keys = { "r", "late" } })
    if checkpoints[i - 1] then tx:flush() end
  end
  part:close()
  return out
end

local n = 0
for line in io.stdin:lines() do
  local case = json.decode(line)
  local ok, out = pcall(run, case, n)
  if ok then
    io.stdout:write(json.encode(out), "\n")
  else
    io.stdout:write(json.encode({ error = tostring(out) }), "\n")
  end
  io.stdout:flush()
  n = n + 1
end
