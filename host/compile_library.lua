-- host/compile_library.lua: the build's step that compiles the Lua library
-- (host/bytecode.h): each module's chunk into OUT/<module>.ljbc, named as
-- the binary finds it (<chunk root>/lua/..., so tracebacks name that file).
--   qhost lua host/compile_library.lua OUT CHUNK_ROOT FILE...
-- FILE: lua/qhost/... .lua, relative to the current folder (a checkout).
-- CHUNK_ROOT: the root the binary will run with ("" for this binary's own,
-- a checkout's build; make install gives the install's folder).
local host = require("qhost.host")

local out, chunk_root = arg[1], arg[2]
if not out or not chunk_root or not arg[3] then
  error("usage: qhost lua host/compile_library.lua OUT CHUNK_ROOT FILE...", 0)
end
if chunk_root == "" then chunk_root = host.root end

-- lua/qhost/runtime/loop.lua -> qhost.runtime.loop; lua/qhost/init.lua -> qhost
local function module_name(file)
  local rel = file:match("^lua/(.+)%.lua$")
  if not rel then error(file .. ": not a file of the library (lua/...lua)", 0) end
  return (rel:gsub("/init$", ""):gsub("/", "."))
end

for i = 3, #arg do
  local file = arg[i]
  local ok, err = host.write_bytecode(file, chunk_root .. "/" .. file, out .. "/" .. module_name(file) .. ".ljbc")
  if not ok then error(err, 0) end
end
