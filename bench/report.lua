-- bench/report.lua: turns bench/run.sh's raw records into the results.
--   qhost lua bench/report.lua RUNS META OUTDIR
-- RUNS: one line per run of key=value fields (benchctl run's line plus the
-- workload, implementation, repetition and verification); META: key=value
-- lines about the machine and versions. Writes OUTDIR/results.json (meta,
-- every run, and per workload and implementation the median, min and max of
-- each metric, plus the ratios), results.csv (one row per run),
-- results.md (the tables) and results.svg (a chart of the CPU per message,
-- drawn by bench/chart.lua).
local runs_path, meta_path, outdir = arg[1], arg[2], arg[3]

-- qhost lua runs this file by path, not through require: chart.lua is found
-- next to it.
local script_dir = arg[0]:match("^(.*)[/\\]") or "."
local chart = dofile(script_dir .. "/chart.lua")

local WORKLOADS = { "pipeline", "csv", "source", "startup", "stateful", "window", "join" }
local IMPLS = { "qhost", "qhost2", "quix", "raw" }
local TITLES = {
  pipeline = "1. Pipeline: JSON decode, filter, add a field, encode, produce (raw: copy bytes)",
  csv = "2. CSV source ingest: CSV rows as JSON into a topic",
  source = "3. Custom source: small JSON messages as fast as possible",
  startup = "4. Start-up: a source feeding an app (time to the first produced message, peak RSS)",
  stateful = "5. Stateful: a running count per key in the state store (10,000 keys), produced (no raw)",
  window = "6. Windows: 1 s tumbling windows per key (10,000 keys) with Count, Mean, Sum, final (no raw)",
  join = "7. Join: as-of join with each key's latest metadata (10,000 keys, 2 versions each), produced (no raw)",
}
local NUMERIC = { "n", "wall_s", "first_s", "cpu_s", "user_s", "sys_s", "app_rss_kb", "src_rss_kb",
                  "tree_maxrss_kb", "stop_s", "exit", "reached", "verified", "out_count",
                  "expected_count", "rep" }

local function read_kv_line(line)
  local rec = {}
  for k, v in line:gmatch("([%w_]+)=(%S*)") do rec[k] = v end
  return rec
end

local runs = {}
for line in io.lines(runs_path) do
  if line:match("%S") then
    local rec = read_kv_line(line)
    for _, k in ipairs(NUMERIC) do rec[k] = tonumber(rec[k]) end
    if rec.wall_s and rec.wall_s > 0 then
      rec.msgs_per_s = rec.n / rec.wall_s
    end
    if rec.cpu_s then rec.cpu_us_per_msg = rec.cpu_s * 1e6 / rec.n end
    runs[#runs + 1] = rec
  end
end

local meta, meta_keys = {}, {}
for line in io.lines(meta_path) do
  local k, v = line:match("^([%w_]+)=(.*)$")
  if k then meta[k] = v; meta_keys[#meta_keys + 1] = k end
end

-- Statistics ----------------------------------------------------------------

local METRICS = { "wall_s", "msgs_per_s", "cpu_s", "cpu_us_per_msg", "first_s", "app_rss_kb", "src_rss_kb" }

local function stats(values)
  if #values == 0 then return nil end
  table.sort(values)
  local n = #values
  local median = n % 2 == 1 and values[(n + 1) / 2] or (values[n / 2] + values[n / 2 + 1]) / 2
  return { median = median, min = values[1], max = values[n], n = n }
end

local summary = {}
for _, w in ipairs(WORKLOADS) do
  for _, impl in ipairs(IMPLS) do
    local group, verified, total = {}, 0, 0
    for _, r in ipairs(runs) do
      if r.workload == w and r.impl == impl then
        total = total + 1
        if r.verified == 1 then verified = verified + 1 end
        group[#group + 1] = r
      end
    end
    if total > 0 then
      local s = { runs = total, verified = verified, n = group[1].n }
      for _, m in ipairs(METRICS) do
        local values = {}
        for _, r in ipairs(group) do
          local v = r[m]
          -- A source that never ran (raw has no separate source process)
          -- has no source RSS.
          if v and v >= 0 and not (m == "src_rss_kb" and v == 0) then values[#values + 1] = v end
        end
        s[m] = stats(values)
      end
      summary[w] = summary[w] or {}
      summary[w][impl] = s
    end
  end
end

local function med(w, impl, m)
  local s = summary[w] and summary[w][impl]
  return s and s[m] and s[m].median
end

local ratios = {}
for _, w in ipairs(WORKLOADS) do
  local r = {}
  local function ratio(a, b) return (a and b and b > 0) and a / b or nil end
  r.cpu_qhost_over_quix = ratio(med(w, "qhost", "cpu_s"), med(w, "quix", "cpu_s"))
  r.wall_qhost_over_quix = ratio(med(w, "qhost", "wall_s"), med(w, "quix", "wall_s"))
  r.cpu_per_msg_qhost_over_raw = ratio(med(w, "qhost", "cpu_us_per_msg"), med(w, "raw", "cpu_us_per_msg"))
  r.wall_qhost_over_raw = ratio(med(w, "qhost", "wall_s"), med(w, "raw", "wall_s"))
  r.first_qhost_over_quix = ratio(med(w, "qhost", "first_s"), med(w, "quix", "first_s"))
  r.cpu_qhost2_over_qhost = ratio(med(w, "qhost2", "cpu_s"), med(w, "qhost", "cpu_s"))
  r.cpu_per_msg_qhost2_over_raw = ratio(med(w, "qhost2", "cpu_us_per_msg"), med(w, "raw", "cpu_us_per_msg"))
  r.cpu_qhost2_over_quix = ratio(med(w, "qhost2", "cpu_s"), med(w, "quix", "cpu_s"))
  r.app_rss_qhost_over_quix = ratio(med(w, "qhost", "app_rss_kb"), med(w, "quix", "app_rss_kb"))
  r.src_rss_qhost_over_quix = ratio(med(w, "qhost", "src_rss_kb"), med(w, "quix", "src_rss_kb"))
  if next(r) then ratios[w] = r end
end

-- JSON ----------------------------------------------------------------------

local function json(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return string.format("%.6g", v)
  end
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  end
  local inner = indent .. "  "
  local parts = {}
  if v[1] ~= nil then
    for _, x in ipairs(v) do parts[#parts + 1] = inner .. json(x, inner) end
    return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = inner .. json(k) .. ": " .. json(v[k], inner) end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

local f = assert(io.open(outdir .. "/results.json", "w"))
f:write(json({ meta = meta, runs = runs, summary = summary, ratios = ratios }), "\n")
f:close()

-- CSV -----------------------------------------------------------------------

local CSV_COLS = { "workload", "impl", "rep", "n", "wall_s", "msgs_per_s", "cpu_s", "user_s", "sys_s",
                   "cpu_us_per_msg", "first_s", "app_rss_kb", "src_rss_kb", "tree_maxrss_kb", "stop_s",
                   "exit", "reached", "verified", "out_count", "expected_count", "out_sum", "expected_sum" }
f = assert(io.open(outdir .. "/results.csv", "w"))
f:write(table.concat(CSV_COLS, ","), "\n")
for _, r in ipairs(runs) do
  local row = {}
  for i, c in ipairs(CSV_COLS) do
    local v = r[c]
    if type(v) == "number" and v ~= math.floor(v) then v = string.format("%.6g", v) end
    row[i] = v == nil and "" or tostring(v)
  end
  f:write(table.concat(row, ","), "\n")
end
f:close()

-- Markdown --------------------------------------------------------------------

local function fmt(x, kind)
  if x == nil then return "–" end
  if kind == "mb" then return string.format("%.1f", x / 1024) end
  if kind == "rate" then
    if x >= 1e6 then return string.format("%.2fM", x / 1e6) end
    if x >= 1e3 then return string.format("%.0fk", x / 1e3) end
    return string.format("%.0f", x)
  end
  if x >= 100 then return string.format("%.0f", x) end
  if x >= 10 then return string.format("%.1f", x) end
  if x >= 1 then return string.format("%.2f", x) end
  return string.format("%.3f", x)
end

local function cell(s, kind)
  if not s then return "–" end
  if s.n == 1 or s.min == s.max then return fmt(s.median, kind) end
  return string.format("%s (%s–%s)", fmt(s.median, kind), fmt(s.min, kind), fmt(s.max, kind))
end

local function rfmt(x)
  if not x then return "–" end
  if x >= 10 then return string.format("%.1f", x) end
  if x >= 0.1 then return string.format("%.2f", x) end
  return string.format("%.3f", x)
end

local md = {}
local function out(s) md[#md + 1] = s or "" end
out(string.format("# qhost benchmark (%s, %s messages, %s repetition%s%s)", meta.mode or "?",
  meta.n or "?", meta.reps or "?", meta.reps == "1" and "" or "s",
  meta.quix_reps and meta.quix_reps ~= meta.reps and (", Quix " .. meta.quix_reps) or ""))
out()
for _, k in ipairs(meta_keys) do out(string.format("- %s: %s", k, meta[k])) end
out()
out("Cells: median (min–max) over the repetitions. Wall: process start until every output is in")
out("the output topic. CPU: user+sys of the app and its source processes (not the broker).")
out("RSS: peak resident memory of the app process and of its largest child (the source process).")
out("msgs/s and CPU µs/msg count input messages (pipeline) or produced messages (sources).")
out("verified: runs whose output topic, read back, had exactly the expected message count and")
out("order-independent checksum of keys and values (bench/benchctl.c verify).")
for _, w in ipairs(WORKLOADS) do
  if summary[w] then
    out()
    out("## " .. TITLES[w])
    out()
    out("| impl | verified | wall s | msgs/s | CPU s | CPU µs/msg | first msg s | app RSS MB | source RSS MB |")
    out("|---|---|---|---|---|---|---|---|---|")
    for _, impl in ipairs(IMPLS) do
      local s = summary[w][impl]
      if s then
        out(string.format("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s |", impl, s.verified, s.runs,
          cell(s.wall_s), cell(s.msgs_per_s, "rate"), cell(s.cpu_s), cell(s.cpu_us_per_msg),
          cell(s.first_s), cell(s.app_rss_kb, "mb"), cell(s.src_rss_kb, "mb")))
      end
    end
  end
end
out()
out("## Ratios (of medians)")
out()
out("| workload | CPU qhost/Quix | Quix CPU ÷ qhost CPU | wall qhost/Quix | CPU/msg qhost/raw | wall qhost/raw | first msg qhost/Quix | app RSS qhost/Quix | source RSS qhost/Quix |")
out("|---|---|---|---|---|---|---|---|---|")
for _, w in ipairs(WORKLOADS) do
  local r = ratios[w]
  if r then
    out(string.format("| %s | %s | %s | %s | %s | %s | %s | %s | %s |", w, rfmt(r.cpu_qhost_over_quix),
      r.cpu_qhost_over_quix and (rfmt(1 / r.cpu_qhost_over_quix) .. "x") or "–",
      rfmt(r.wall_qhost_over_quix), rfmt(r.cpu_per_msg_qhost_over_raw), rfmt(r.wall_qhost_over_raw),
      rfmt(r.first_qhost_over_quix), rfmt(r.app_rss_qhost_over_quix), rfmt(r.src_rss_qhost_over_quix)))
  end
end
local any2 = false
for _, w in ipairs(WORKLOADS) do if med(w, "qhost2", "cpu_s") then any2 = true end end
if any2 then
  out()
  out("qhost2 (" .. (meta.qhost2 or "?") .. ") against qhost:")
  out()
  out("| workload | CPU qhost2/qhost | CPU/msg qhost2/raw | CPU qhost2/Quix |")
  out("|---|---|---|---|")
  for _, w in ipairs(WORKLOADS) do
    local r = ratios[w]
    if r and r.cpu_qhost2_over_qhost then
      out(string.format("| %s | %s | %s | %s |", w, rfmt(r.cpu_qhost2_over_qhost),
        rfmt(r.cpu_per_msg_qhost2_over_raw), rfmt(r.cpu_qhost2_over_quix)))
    end
  end
end
out()
out("Pipeline raw copies every message unchanged (no JSON, no filter); qhost and Quix decode all")
out("N, keep about half and encode those. Start-up raw is the producer alone (no app).")
f = assert(io.open(outdir .. "/results.md", "w"))
f:write(table.concat(md, "\n"), "\n")
f:close()

-- Chart -----------------------------------------------------------------------

f = assert(io.open(outdir .. "/results.svg", "w"))
f:write(chart.svg(summary, meta))
f:close()
