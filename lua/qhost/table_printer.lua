-- qhost.table_printer: what sdf:print_table shows (Quix's print_table): on a
-- terminal, a live table of the last `size` messages redrawn in place at
-- most every `live_slowdown` seconds; otherwise (a pipe, a file) one plain
-- line per message under a header line, so logs stay readable.
local codec = require("qhost.codec")
local host = require("qhost.host")

local printer = {}

local function cell(v)
  if v == nil or v == codec.null then return "" end
  if type(v) == "table" then return (codec.json_encode(v)) or "?" end
  return tostring(v)
end

-- The row's columns: given, or the value's keys (in their JSON order).
local function columns_of(row, given, metadata)
  if given then return given end
  local cols = {}
  if metadata then cols = { "_key", "_timestamp" } end
  if type(row.value) == "table" then
    local keys = codec.keys_of(row.value)
    if not keys then
      keys = {}
      for k in pairs(row.value) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
    end
    for _, k in ipairs(keys) do cols[#cols + 1] = k end
  else
    cols[#cols + 1] = "_value"
  end
  return cols
end

local function cells(row, cols)
  local out = {}
  for i, c in ipairs(cols) do
    local v
    if c == "_key" then v = row.key
    elseif c == "_timestamp" then v = row.timestamp
    elseif c == "_value" then v = row.value
    elseif type(row.value) == "table" then v = row.value[c] end
    out[i] = cell(v)
  end
  return out
end

-- printer.render(rows, cols, title) -> the boxed table text.
function printer.render(rows, cols, title)
  local widths = {}
  for i, c in ipairs(cols) do widths[i] = #c end
  local body = {}
  for r, row in ipairs(rows) do
    body[r] = row
    for i, text in ipairs(row) do if #text > widths[i] then widths[i] = #text end end
  end
  local function line(parts)
    local out = {}
    for i, text in ipairs(parts) do out[i] = text .. string.rep(" ", widths[i] - #text) end
    return "| " .. table.concat(out, " | ") .. " |"
  end
  local rule = {}
  for i, w in ipairs(widths) do rule[i] = string.rep("-", w) end
  local lines = {}
  if title then lines[#lines + 1] = title end
  lines[#lines + 1] = "+-" .. table.concat(rule, "-+-") .. "-+"
  lines[#lines + 1] = line(cols)
  lines[#lines + 1] = "+-" .. table.concat(rule, "-+-") .. "-+"
  for _, row in ipairs(body) do lines[#lines + 1] = line(row) end
  lines[#lines + 1] = "+-" .. table.concat(rule, "-+-") .. "-+"
  return table.concat(lines, "\n")
end

-- printer.new(opts, write, is_tty) -> fn(value, key, timestamp) called per message.
function printer.new(opts, write, is_tty)
  local size = opts.size or 5
  local live_slowdown = opts.live_slowdown or 0.5
  local cols, rows, drawn_lines, last_draw = nil, {}, 0, 0
  if not is_tty then
    return function(value, key, timestamp)
      local row = { value = value, key = key, timestamp = timestamp }
      if not cols then
        cols = columns_of(row, opts.columns, opts.metadata)
        write(table.concat(cols, "\t"))
      end
      write(table.concat(cells(row, cols), "\t"))
    end
  end
  return function(value, key, timestamp)
    local row = { value = value, key = key, timestamp = timestamp }
    cols = cols or columns_of(row, opts.columns, opts.metadata)
    rows[#rows + 1] = cells(row, cols)
    if #rows > size then table.remove(rows, 1) end
    local now = host.monotonic()
    if now - last_draw < live_slowdown then return end
    last_draw = now
    local text = printer.render(rows, cols, opts.title)
    -- Back over the previous drawing, then clear to the end of the screen.
    local up = drawn_lines > 0 and string.format("\27[%dA\r\27[J", drawn_lines) or ""
    write(up .. text)
    drawn_lines = select(2, text:gsub("\n", "")) + 1
  end
end

return printer
