-- qhost.runtime.argcheck: how every public call checks what it is given. Errors
-- name the object, the option and the user's file:line: the first frame on
-- the stack that is not the qhost library (its lua/qhost/ and sources/
-- folders) nor C, however deep inside the library the check runs. Unknown
-- options are refused with the closest valid name, so a typo never passes
-- silently.
local argcheck = {}

-- The library's own folders, from where this file was loaded.
local here = debug.getinfo(1, "S").source
local lib_dir = here:match("^@(.*)/qhost/runtime/argcheck%.lua$") or ""
local lib_prefixes = { "@" .. lib_dir .. "/qhost/" }
do
  local root = lib_dir:match("^(.*)/lua$")
  if root then lib_prefixes[2] = "@" .. root .. "/sources/" end
end

local function is_library(source)
  if source == "=[C]" then return true end
  for _, prefix in ipairs(lib_prefixes) do
    if source:sub(1, #prefix) == prefix then return true end
  end
  return false
end

-- argcheck.user_level(from) -> the level of the first user frame, counted
-- as debug.getinfo and error() count in the function that called us (1 is
-- that function), looking from its level `from` up; nil when none.
function argcheck.user_level(from)
  local level = (from or 2) + 1
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return nil end
    if not is_library(info.source) then return level - 1 end
    level = level + 1
  end
end

-- "app.lua:12" of the first user frame, or "?".
function argcheck.where()
  local level = argcheck.user_level(2)
  if not level then return "?" end
  local info = debug.getinfo(level, "Sl")
  return string.format("%s:%d", info.short_src, info.currentline or 0)
end

-- argcheck.fail(fmt, ...): raises the message at the user's line.
function argcheck.fail(fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or fmt
  local level = argcheck.user_level(2)
  error(msg, level or 0)
end

-- Edit distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The candidate closest to `name`, when close enough to be a typo.
function argcheck.closest(name, candidates)
  if type(name) ~= "string" then return nil end
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(name:lower(), c:lower())
    if not best_d or d < best_d or (d == best_d and c < best) then best, best_d = c, d end
  end
  if best and best_d <= math.max(2, math.floor(#name / 3)) then return best end
  return nil
end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- An option's type rule: a type name ("string", "number", "integer",
-- "boolean", "table", "function"), several joined by "|", or a function
-- returning true or the text of what was expected.
local function type_ok(rule, value)
  if type(rule) == "function" then return rule(value) end
  for want in rule:gmatch("[^|]+") do
    if want == "integer" then
      if type(value) == "number" and value % 1 == 0 then return true end
    elseif want == "any" or type(value) == want then
      return true
    end
  end
  local names = {}
  for want in rule:gmatch("[^|]+") do
    names[#names + 1] = (want == "integer" and "an " or "a ") .. want
  end
  return table.concat(names, " or ")
end

local function describe(value)
  if type(value) == "string" then return string.format("the string %q", value) end
  if type(value) == "number" then return tostring(value) end
  return "a " .. type(value)
end

-- Every public call's options, by the call's name as the reference
-- (docs/api.md) writes it ("sdf:print", "Application"): a test checks the
-- reference and these say the same.
argcheck.specs = {}

-- argcheck.declare(call, spec) -> spec, recorded under `call`.
function argcheck.declare(call, spec)
  argcheck.specs[call] = spec
  return spec
end

-- argcheck.options(what, opts, spec) -> opts (a table, {} for nil).
-- `what` names the call ("sdf:print", "CSVSource 'orders'"); spec maps
-- each option to its rule (see type_ok). Raises at the user's line on a
-- non-table, an unknown option (with the closest valid name) or a wrong
-- type.
function argcheck.options(what, opts, spec)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    argcheck.fail("%s expects a table of options, got %s", what, describe(opts))
  end
  local names
  for key, value in pairs(opts) do
    local rule = spec[key]
    if rule == nil then
      names = names or sorted_keys(spec)
      local hint = argcheck.closest(key, names)
      argcheck.fail("%s: unknown option %s%s (valid: %s)", what,
        type(key) == "string" and string.format("%q", key) or describe(key),
        hint and string.format("; did you mean %q?", hint) or "", table.concat(names, ", "))
    end
    local ok = type_ok(rule, value)
    if ok ~= true then
      argcheck.fail("%s: %s must be %s, got %s", what, key, ok, describe(value))
    end
  end
  return opts
end

-- argcheck.value(what, name, value, rule) checks one argument the same way.
function argcheck.value(what, name, value, rule)
  local ok = type_ok(rule, value)
  if ok ~= true then argcheck.fail("%s: %s must be %s, got %s", what, name, ok, describe(value)) end
  return value
end

-- argcheck.one_of(what, name, value, allowed) for enumerated options.
function argcheck.one_of(what, name, value, allowed)
  for _, a in ipairs(allowed) do
    if value == a then return value end
  end
  local quoted = {}
  for i, a in ipairs(allowed) do quoted[i] = string.format("%q", a) end
  local hint = argcheck.closest(value, allowed)
  argcheck.fail("%s: %s must be one of %s, got %s%s", what, name, table.concat(quoted, ", "), describe(value),
    hint and string.format("; did you mean %q?", hint) or "")
end

-- argcheck.guard_methods(class, display, var): the public methods of a
-- class (a metatable whose __index is itself) check they were called with
-- a colon, and a name the class does not have raises with the closest
-- method (`sdf:aply` -> "did you mean sdf:apply?"). Only for classes whose
-- instances keep every field they read (false, not nil, for "none").
function argcheck.guard_methods(class, display, var)
  local methods = {}
  for name, fn in pairs(class) do
    if type(fn) == "function" and not name:find("^_") then
      methods[#methods + 1] = name
      class[name] = function(self, ...)
        if getmetatable(self) ~= class then
          argcheck.fail("%s.%s called with a dot: write %s:%s(...) (with a colon)", display, name, var, name)
        end
        return fn(self, ...)
      end
    end
  end
  table.sort(methods)
  setmetatable(class, { __index = function(_, name)
    local hint = argcheck.closest(name, methods)
    argcheck.fail("%s has no method or field %q%s", display, tostring(name),
      hint and string.format("; did you mean %s:%s?", var, hint) or "")
  end })
end

return argcheck
