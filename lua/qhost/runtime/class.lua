-- qhost.runtime.class: what Source and the sinks share as classes: calling a class
-- with one options table makes an instance that keeps every option as a
-- field and then runs the class's init(opts).
local class = {}

function class.construct(cls, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("%s expects a table of options, got %s", cls.__name, type(opts)), 2)
  end
  local self = setmetatable({}, cls)
  for k, v in pairs(opts or {}) do self[k] = v end
  self:init(opts or {})
  return self
end

return class
