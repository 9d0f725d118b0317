-- qhost.runtime.table_printer: what sdf:print_table shows (Quix's
-- quixstreams/utils/printing.py). One printer per run holds every table of
-- the pipeline. Each table keeps the last `size` rows and every column seen
-- so far, in the order first seen (or the columns asked for).
-- On a terminal (`live`), the tables are redrawn in place at most every
-- `live_slowdown` seconds, and once more when the run ends, so the last rows
-- are always on screen; unlike Quix, the app does not sleep to slow down.
-- Elsewhere (a pipe, a file) a table is printed whole once it is full or
-- `timeout` seconds after it started collecting, then starts again; what is
-- left is printed when the run ends. Rows wider than the terminal lose their
-- last columns, with a note saying how many.
local codec = require("qhost.codec")
local utf8_length_at = require("qhost.runtime.printing").utf8_length_at

local printer = {}

local Printer = {}
Printer.__index = Printer

local Table = {}
Table.__index = Table

-- printer.new(write, live, width) -> Printer. write(text) prints text and a
-- newline; width is the terminal's (nil: no limit).
function printer.new(write, live, width)
  return setmetatable({ write = write, live = live, width = width, slowdown = 0.5, tables = {},
                        drawn_lines = 0, last_draw = -math.huge, dirty = false }, Printer)
end

-- Quix: the last live / live_slowdown given wins for the whole pipeline.
function Printer:configure_live(live, slowdown)
  if live == false then self.live = false end
  if slowdown then self.slowdown = math.max(0, slowdown) end
end

-- printer:add_table{ size, title, timeout, columns, column_widths } -> Table
function Printer:add_table(opts)
  local t = setmetatable({
    size = opts.size or 5, title = opts.title, timeout = opts.timeout or 5.0,
    auto_columns = opts.columns == nil, columns = {}, seen = {},
    widths = opts.column_widths or {}, rows = {}, started = nil, printer = self,
  }, Table)
  for _, c in ipairs(opts.columns or {}) do
    t.columns[#t.columns + 1] = c
    t.seen[c] = true
  end
  self.tables[#self.tables + 1] = t
  return t
end

local function cell(v)
  if v == nil or v == codec.null then return "" end
  if type(v) == "table" then return (codec.json_encode(v)) or "?" end
  if type(v) == "string" then return (v:gsub("[%c]", " ")) end
  return (tostring(v):gsub("U?LL$", ""))
end

-- table:add_row(names, values, now): names in their order, values by name.
function Table:add_row(names, values, now)
  if self.auto_columns then
    for _, name in ipairs(names) do
      if not self.seen[name] then
        self.seen[name] = true
        self.columns[#self.columns + 1] = name
      end
    end
  end
  local row = {}
  for _, name in ipairs(self.columns) do row[name] = cell(values[name]) end
  local rows = self.rows
  rows[#rows + 1] = row
  if #rows > self.size then table.remove(rows, 1) end
  self.started = self.started or now
  self.printer.dirty = true
end

-- Code points a terminal shows in two cells (East Asian Wide and
-- Fullwidth: CJK, Hangul, kana, fullwidth forms; emoji), as rich (Quix's
-- print_table) counts them; and ones it shows in none (combining marks,
-- zero-width spaces and joiners, variation selectors).
local WIDE = {
  { 0x1100, 0x115F }, { 0x2E80, 0x303E }, { 0x3041, 0x33FF }, { 0x3400, 0x4DBF }, { 0x4E00, 0x9FFF },
  { 0xA000, 0xA4CF }, { 0xA960, 0xA97F }, { 0xAC00, 0xD7A3 }, { 0xF900, 0xFAFF }, { 0xFE30, 0xFE4F },
  { 0xFF00, 0xFF60 }, { 0xFFE0, 0xFFE6 }, { 0x1F300, 0x1F64F }, { 0x1F680, 0x1F6FF }, { 0x1F900, 0x1F9FF },
  { 0x20000, 0x2FFFD }, { 0x30000, 0x3FFFD },
}
local ZERO = {
  { 0x0300, 0x036F }, { 0x200B, 0x200F }, { 0x20D0, 0x20FF }, { 0xFE00, 0xFE0F }, { 0xFE20, 0xFE2F },
}

local function in_ranges(ranges, cp)
  for i = 1, #ranges do
    local r = ranges[i]
    if cp < r[1] then return false end
    if cp <= r[2] then return true end
  end
  return false
end

-- The cells (0, 1 or 2) of the code point at byte i of text, and the byte
-- after it. A byte that starts no valid sequence is one cell.
local function code_point_at(text, i)
  local len = utf8_length_at(text, i)
  if len <= 1 then return 1, i + 1 end
  local c = text:byte(i)
  local cp = c % (len == 4 and 8 or len == 3 and 16 or 32)
  for k = 1, len - 1 do cp = cp * 64 + text:byte(i + k) % 64 end
  if cp < 0x300 then return 1, i + len end
  if in_ranges(ZERO, cp) then return 0, i + len end
  return in_ranges(WIDE, cp) and 2 or 1, i + len
end

-- Cut to at most `width` terminal cells.
local function clip(text, width)
  local used, i = 0, 1
  while i <= #text do
    local cells, after = code_point_at(text, i)
    if used + cells > width then return text:sub(1, i - 1) end
    used, i = used + cells, after
  end
  return text
end

-- The terminal cells text takes.
local function display_len(text)
  if not text:find("[\128-\255]") then return #text end
  local used, i = 0, 1
  while i <= #text do
    local cells, after = code_point_at(text, i)
    used, i = used + cells, after
  end
  return used
end
printer._display_len, printer._clip = display_len, clip

-- The boxed text of the table, at most `max_width` characters wide.
function Table:render(max_width)
  local cols, widths = {}, {}
  local used, hidden = 4, 0
  for _, c in ipairs(self.columns) do
    local w = self.widths[c]
    if not w then
      w = display_len(c)
      for _, row in ipairs(self.rows) do w = math.max(w, display_len(row[c] or "")) end
    end
    if hidden > 0 or (max_width and used + w + 3 > max_width and #cols > 0) then
      hidden = hidden + 1
    else
      cols[#cols + 1], widths[#widths + 1] = c, w
      used = used + w + 3
    end
  end
  local function line(texts)
    local out = {}
    for i, text in ipairs(texts) do
      text = clip(text, widths[i])
      out[i] = text .. string.rep(" ", widths[i] - display_len(text))
    end
    return "| " .. table.concat(out, " | ") .. " |"
  end
  local rule = {}
  for i, w in ipairs(widths) do rule[i] = string.rep("-", w) end
  rule = "+-" .. table.concat(rule, "-+-") .. "-+"
  local lines = {}
  local title = self.title
  if hidden > 0 then
    title = (title and title .. " " or "") .. string.format("(%d more column%s not shown)", hidden,
      hidden == 1 and "" or "s")
  end
  if title then lines[#lines + 1] = title end
  lines[#lines + 1] = rule
  lines[#lines + 1] = line(cols)
  lines[#lines + 1] = rule
  for _, row in ipairs(self.rows) do
    local texts = {}
    for i, c in ipairs(cols) do texts[i] = row[c] or "" end
    lines[#lines + 1] = line(texts)
  end
  lines[#lines + 1] = rule
  return table.concat(lines, "\n")
end

-- printer:tick(now, final): called by the run loop between batches and once
-- at the end (final), so what arrived is always shown.
function Printer:tick(now, final)
  if self.live then
    if not self.dirty or (not final and now - self.last_draw < self.slowdown) then return end
    local parts = {}
    for _, t in ipairs(self.tables) do
      if #t.rows > 0 then parts[#parts + 1] = t:render(self.width) end
    end
    local text = table.concat(parts, "\n")
    -- Back over the previous drawing, then clear to the end of the screen.
    local up = self.drawn_lines > 0 and string.format("\27[%dA\r\27[J", self.drawn_lines) or ""
    self.write(up .. text)
    self.drawn_lines = select(2, text:gsub("\n", "")) + 1
    self.last_draw, self.dirty = now, false
    return
  end
  for _, t in ipairs(self.tables) do
    if #t.rows > 0 and (final or #t.rows >= t.size or now - t.started >= t.timeout) then
      self.write(t:render(self.width))
      t.rows, t.started = {}, nil
    end
  end
end

-- The row of one message: the value's fields in their order (a value that
-- is not an object is the column "0", as in Quix), after _key and
-- _timestamp with metadata.
function printer.row_of(value, key, timestamp, metadata)
  local names, values = {}, {}
  if metadata then
    names[1], names[2] = "_key", "_timestamp"
    values._key, values._timestamp = key, timestamp
  end
  if type(value) == "table" and (next(value) == nil or value[1] == nil) then
    -- The order JSON output has: the remembered order of a decoded object
    -- (the keys still there), then keys added since, sorted.
    local listed = {}
    for _, k in ipairs(codec.keys_of(value) or {}) do
      if value[k] ~= nil and not listed[k] then
        listed[k] = true
        names[#names + 1] = k
        values[k] = value[k]
      end
    end
    local extra = {}
    for k in pairs(value) do
      if not listed[k] then extra[#extra + 1] = k end
    end
    table.sort(extra, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(extra) do
      local name = tostring(k)
      names[#names + 1] = name
      values[name] = value[k]
    end
  else
    names[#names + 1] = "0"
    values["0"] = value
  end
  return names, values
end

return printer
