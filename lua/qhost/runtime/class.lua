-- qhost.runtime.class: what the user-extendable classes share (Source, the
-- sinks, aggregators, lookups): a class's metatable calls a constructor,
-- and a subclass names its base in __super.
local argcheck = require("qhost.runtime.argcheck")

local class = {}

-- The constructor of Source, the sinks and the lookups: calling a class
-- with one options table makes an instance that keeps every option as a
-- field and then runs the class's init(opts).
function class.construct(cls, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("%s expects a table of options, got %s", cls.__name, type(opts)), 2)
  end
  local self = setmetatable({}, cls)
  for k, v in pairs(opts or {}) do self[k] = v end
  self:init(opts or {})
  return self
end

-- class.subclass(base, name, construct) -> a class named `name` whose
-- methods default to base's, made by calling it (construct(cls, ...)).
function class.subclass(base, name, construct)
  if type(name) ~= "string" or name == "" then argcheck.fail("%s:extend expects a class name string", base.__name) end
  local cls = { __name = name, __super = base }
  cls.__index = cls
  return setmetatable(cls, { __index = base, __call = construct })
end

-- Whether x is an instance of base or of a subclass of it.
function class.is_a(x, base)
  local mt = getmetatable(x)
  while type(mt) == "table" do
    if mt == base then return true end
    mt = rawget(mt, "__super")
  end
  return false
end

return class
