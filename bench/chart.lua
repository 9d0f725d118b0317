-- bench/chart.lua: the benchmark's CPU cost as an SVG bar chart (results.svg).
--   local chart = dofile(dir .. "/chart.lua")
--   local text = chart.svg(summary, meta)
-- summary is report.lua's: summary[workload][impl].cpu_us_per_msg.median is
-- CPU µs per message, the same number as CPU s per million messages. meta is
-- report.lua's key=value table (date, n, reps, mode). The result is one
-- self-contained SVG 1.1 document (no fonts, scripts or CSS of its own):
-- per workload a group of horizontal bars, one per implementation present.
--
-- Scale: one log10 axis shared by every workload, decades labelled. Quix
-- costs 5-20x the CPU of qhost, and start-up costs far more per message than
-- the pipeline: on a linear axis, even one per workload, the qhost and raw
-- bars next to Quix's would be a few pixels long. On a log axis every bar
-- stays readable, one shared axis compares workloads too, and equal ratios
-- are equal distances, which is what the comparison is about.
local M = {}

local WORKLOADS = { "pipeline", "csv", "source", "startup", "stateful", "window", "join" }
local IMPLS = { "qhost", "qhost2", "quix", "raw" }
local COLOURS = { qhost = "#1f77b4", qhost2 = "#9467bd", quix = "#ff7f0e", raw = "#7f7f7f" }
local AXIS_LABEL = "CPU s per 1M messages"

-- Layout, in px.
local WIDTH = 900
local MARGIN = 12              -- left of the title
local PLOT_LEFT = 120          -- the workload names are right-aligned before it
local PLOT_RIGHT = WIDTH - 70  -- room for the value written after the longest bar
local PLOT_TOP = 66            -- below the title and the legend
local BAR_HEIGHT = 14
local BAR_GAP = 3
local GROUP_PAD = 8            -- above and below each workload's bars
local AXIS_HEIGHT = 50         -- the decade labels and the axis label
-- The smallest bar is at least this fraction of a decade long: a value just
-- above a decade would otherwise start and end at the same pixel.
local MIN_BAR_DECADES = 0.15
local FONT = "sans-serif"

-- Text ------------------------------------------------------------------------

local XML_ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                       ["'"] = "&apos;" }

local function escape_xml(s)
  return (tostring(s):gsub("[&<>\"']", XML_ENTITIES))
end

-- The same precision as the tables of results.md, so chart and table agree.
local function format_value(x)
  if x >= 100 then return string.format("%.0f", x) end
  if x >= 10 then return string.format("%.1f", x) end
  if x >= 1 then return string.format("%.2f", x) end
  return string.format("%.3f", x)
end

-- 10^e written out: 0.01, 0.1, 1, 10, 100 (never 1e+03).
local function decade_label(e)
  if e >= 0 then return string.format("%d", 10 ^ e) end
  return string.format("%." .. -e .. "f", 10 ^ e)
end

-- Coordinates keep two decimals: enough to keep close values apart, short to read.
local function px(x)
  return (string.format("%.2f", x):gsub("%.?0+$", ""))
end

-- One element; attrs is a list of {name, value} so their order is stable.
local function element(name, attrs, body)
  local parts = { "<" .. name }
  for _, a in ipairs(attrs) do
    local v = type(a[2]) == "number" and px(a[2]) or escape_xml(a[2])
    parts[#parts + 1] = string.format(' %s="%s"', a[1], v)
  end
  if body == nil then return table.concat(parts) .. "/>" end
  return table.concat(parts) .. ">" .. body .. "</" .. name .. ">"
end

local function text(x, y, s, attrs)
  local all = { { "x", x }, { "y", y } }
  for _, a in ipairs(attrs or {}) do all[#all + 1] = a end
  return element("text", all, escape_xml(s))
end

-- Data ------------------------------------------------------------------------

-- The known workloads in bench/run.sh's order, then any others by name: a
-- summary from another run (or a test) may hold one, and drawing it beats
-- dropping it without a word.
local function ordered_workloads(summary)
  local known, order, extra = {}, {}, {}
  for _, w in ipairs(WORKLOADS) do
    known[w] = true
    if summary[w] then order[#order + 1] = w end
  end
  for w in pairs(summary) do
    if not known[w] then extra[#extra + 1] = w end
  end
  table.sort(extra)
  for _, w in ipairs(extra) do order[#order + 1] = w end
  return order
end

-- CPU s per million messages of one workload and implementation, or nil.
-- A zero or negative median has no place on a log axis: no bar.
local function cpu_per_million(s)
  local m = s and s.cpu_us_per_msg
  if m and m.median and m.median > 0 then return m.median end
  return nil
end

-- The groups to draw: { workload, bars = { { impl, value, stats } } }, only
-- workloads with at least one bar.
local function collect_groups(summary)
  local groups = {}
  for _, w in ipairs(ordered_workloads(summary)) do
    local bars = {}
    for _, impl in ipairs(IMPLS) do
      local value = cpu_per_million(summary[w][impl])
      if value then
        bars[#bars + 1] = { impl = impl, value = value, stats = summary[w][impl].cpu_us_per_msg }
      end
    end
    if #bars > 0 then groups[#groups + 1] = { workload = w, bars = bars } end
  end
  return groups
end

local function impls_present(groups)
  local seen, list = {}, {}
  for _, g in ipairs(groups) do
    for _, b in ipairs(g.bars) do seen[b.impl] = true end
  end
  for _, impl in ipairs(IMPLS) do
    if seen[impl] then list[#list + 1] = impl end
  end
  return list
end

-- Scale -----------------------------------------------------------------------

-- The decades the axis spans: from below the smallest value to the largest.
local function decade_range(groups)
  local lo, hi = math.huge, 0
  for _, g in ipairs(groups) do
    for _, b in ipairs(g.bars) do
      lo, hi = math.min(lo, b.value), math.max(hi, b.value)
    end
  end
  local lo_exp = math.floor(math.log10(lo))
  if math.log10(lo) - lo_exp < MIN_BAR_DECADES then lo_exp = lo_exp - 1 end
  local hi_exp = math.max(math.ceil(math.log10(hi)), lo_exp + 1)
  return lo_exp, hi_exp
end

-- value -> x on the log axis.
local function log_scale(lo_exp, hi_exp)
  local px_per_decade = (PLOT_RIGHT - PLOT_LEFT) / (hi_exp - lo_exp)
  return function(value)
    return PLOT_LEFT + (math.log10(value) - lo_exp) * px_per_decade
  end
end

-- Drawing ---------------------------------------------------------------------

local function group_height(g)
  return 2 * GROUP_PAD + #g.bars * BAR_HEIGHT + (#g.bars - 1) * BAR_GAP
end

-- The start-up workload runs its own, smaller n: say so when it is drawn.
local function title_line(meta, groups)
  local n = meta.n or "?"
  for _, g in ipairs(groups) do
    if g.workload == "startup" and meta.startup_n then
      n = string.format("%s (startup %s)", n, meta.startup_n)
    end
  end
  return string.format("qhost benchmark: %s, %s, %s, n=%s, reps=%s", AXIS_LABEL,
    meta.date or "?", meta.mode or "?", n, meta.reps or "?")
end

local function draw_legend(out, impls)
  local x = PLOT_LEFT
  for _, impl in ipairs(impls) do
    out[#out + 1] = element("rect", { { "x", x }, { "y", 38 }, { "width", 12 }, { "height", 12 },
      { "fill", COLOURS[impl] } })
    out[#out + 1] = text(x + 17, 48, impl, { { "font-size", 12 } })
    x = x + 90
  end
end

local function grid_line(x, bottom, colour)
  return element("line", { { "x1", x }, { "y1", PLOT_TOP }, { "x2", x }, { "y2", bottom },
    { "stroke", colour }, { "stroke-width", 1 } })
end

-- Decade lines labelled under the plot; fainter lines at 2..9 times each
-- decade but the last, so a value can be read off between them.
local function draw_grid(out, scale, lo_exp, hi_exp, bottom)
  for e = lo_exp, hi_exp do
    local x = scale(10 ^ e)
    out[#out + 1] = grid_line(x, bottom, "#aaaaaa")
    out[#out + 1] = text(x, bottom + 15, decade_label(e),
      { { "font-size", 11 }, { "text-anchor", "middle" } })
    if e < hi_exp then
      for k = 2, 9 do out[#out + 1] = grid_line(scale(k * 10 ^ e), bottom, "#e4e4e4") end
    end
  end
  out[#out + 1] = text((PLOT_LEFT + PLOT_RIGHT) / 2, bottom + 38, AXIS_LABEL .. " (log scale)",
    { { "font-size", 12 }, { "text-anchor", "middle" } })
end

local function bar_tooltip(workload, b)
  local s = b.stats
  local range = ""
  if s.n and s.n > 1 then
    range = string.format(" (median of %d, %s–%s)", s.n, format_value(s.min), format_value(s.max))
  end
  return string.format("%s, %s: %s %s%s", workload, b.impl, format_value(b.value), AXIS_LABEL,
    range)
end

-- One bar; the data- attributes name what it shows (tools and the spec read them).
local function bar_element(workload, b, y, x_end)
  return element("rect", { { "x", PLOT_LEFT }, { "y", y }, { "width", x_end - PLOT_LEFT },
    { "height", BAR_HEIGHT }, { "fill", COLOURS[b.impl] }, { "data-workload", workload },
    { "data-impl", b.impl }, { "data-value", string.format("%.6g", b.value) } },
    element("title", {}, escape_xml(bar_tooltip(workload, b))))
end

-- One workload's bars from y down, into layers.marks; a shaded band behind
-- every other group, into layers.bands (drawn under the grid).
local function draw_group(layers, scale, g, index, y)
  local h = group_height(g)
  if index % 2 == 0 then
    layers.bands[#layers.bands + 1] = element("rect", { { "x", 0 }, { "y", y },
      { "width", WIDTH }, { "height", h }, { "fill", "#f3f3f3" } })
  end
  local out = layers.marks
  out[#out + 1] = text(PLOT_LEFT - 8, y + h / 2 + 4, g.workload,
    { { "font-size", 12 }, { "text-anchor", "end" } })
  local bar_y = y + GROUP_PAD
  for _, b in ipairs(g.bars) do
    local x_end = scale(b.value)
    out[#out + 1] = bar_element(g.workload, b, bar_y, x_end)
    out[#out + 1] = text(x_end + 4, bar_y + BAR_HEIGHT - 3, format_value(b.value),
      { { "font-size", 11 } })
    bar_y = bar_y + BAR_HEIGHT + BAR_GAP
  end
  return y + h
end

local function svg_document(height, body)
  return table.concat({
    '<?xml version="1.0" encoding="UTF-8"?>',
    element("svg", { { "xmlns", "http://www.w3.org/2000/svg" }, { "version", "1.1" },
      { "width", WIDTH }, { "height", height }, { "viewBox", "0 0 " .. WIDTH .. " " .. height },
      { "font-family", FONT } },
      "\n" .. table.concat(body, "\n") .. "\n"),
  }, "\n") .. "\n"
end

local function append_all(out, list)
  for _, e in ipairs(list) do out[#out + 1] = e end
end

local function background(height)
  return element("rect", { { "x", 0 }, { "y", 0 }, { "width", WIDTH }, { "height", height },
    { "fill", "#ffffff" } })
end

local function title_element(meta, groups)
  return text(MARGIN, 22, title_line(meta, groups),
    { { "font-size", 14 }, { "font-weight", "bold" } })
end

local function empty_chart(meta)
  local height = PLOT_TOP + 20
  return svg_document(height, { background(height), title_element(meta, {}),
    text(PLOT_LEFT, PLOT_TOP, "no CPU data in the results", { { "font-size", 12 } }) })
end

-- The SVG text of the chart for report.lua's summary and meta.
function M.svg(summary, meta)
  local groups = collect_groups(summary)
  if #groups == 0 then return empty_chart(meta) end
  local bottom = PLOT_TOP
  for _, g in ipairs(groups) do bottom = bottom + group_height(g) end
  local height = bottom + AXIS_HEIGHT
  local lo_exp, hi_exp = decade_range(groups)
  local scale = log_scale(lo_exp, hi_exp)
  local layers = { bands = {}, marks = {} }
  local y = PLOT_TOP
  for i, g in ipairs(groups) do y = draw_group(layers, scale, g, i, y) end
  -- Later elements paint over earlier ones: bands, then grid, then bars.
  local body = { background(height), title_element(meta, groups) }
  draw_legend(body, impls_present(groups))
  append_all(body, layers.bands)
  draw_grid(body, scale, lo_exp, hi_exp, bottom)
  append_all(body, layers.marks)
  return svg_document(height, body)
end

return M
