-- qhost.runtime.main: what `qhost run SCRIPT [args]` does. In the app process it
-- runs the script (whose app:run() runs the app). In a spawned source
-- process it reads the source's spec first: a class from a module or file
-- is loaded and run directly; a class defined in the app script needs the
-- script re-run, and its app:run() hands over to the source.
-- qhost.app and qhost.runtime.source_process load in run_script, after a
-- source process has made its producer (see open_source).
local clients = require("qhost.kafka.clients")
local error_text = require("qhost.runtime.error_text")
local spawn = require("qhost.spawn")
local transfer = require("qhost.runtime.transfer")

local main = {}

-- The JIT's limits. An app's per-message loop compiles into one trace that
-- holds the JSON decoder of the message's shape, the user's functions, the
-- JSON writer and the producer's call: for an 8-member message more than
-- LuaJIT's defaults allow (4,000 IR instructions, 500 snapshots, 500 IR
-- constants), which abort it ("trace too long") and after a few tries leave
-- the loop to the interpreter. The machine code they need gets room too.
local JIT_LIMITS = { "maxrecord=16000", "maxsnap=2000", "maxirconst=2000", "sizemcode=64", "maxmcode=4096" }

-- In a spawned source process: the spec the app sent (source_process.spec)
-- and the source's producer, made before anything else loads. Connecting,
-- the broker's API versions and the producer id that idempotence asks for
-- are round trips to the broker: they now go on while this process loads
-- qhost's modules and re-runs the script, instead of after (some 5 ms of
-- the time to a source's first message). The producer's failure waits for
-- source_process.run, which reports it. Returns { spec, producer,
-- producer_error }, or nil in the app's process.
local function open_source()
  if not spawn.is_child() then return nil end
  local text, err = spawn.child_read_spec()
  if not text then error("source process: cannot read its spec: " .. tostring(err), 0) end
  local spec, derr = transfer.decode(text)
  if not spec then error("source process: bad spec: " .. tostring(derr), 0) end
  local producer, perr = clients.producer(spec.producer_config)
  return { spec = spec, producer = producer, producer_error = perr }
end

local function run_script(argv)
  local script = argv[1]
  local args = {}
  for i = 2, #argv do args[#args + 1] = argv[i] end

  local child = open_source()
  local app_mod = require("qhost.app")
  local source_process = require("qhost.runtime.source_process")
  local spec = child and child.spec
  if spec then
    package.path, package.cpath = spec.package_path, spec.package_cpath
    if spec.where.mode ~= "script" then return source_process.run(child) end
    app_mod.child = child
  end

  app_mod.script, app_mod.script_args = script, args
  local arg = { [0] = script }
  for i, a in ipairs(args) do arg[i] = a end
  _G.arg = arg
  local chunk, err = loadfile(script)
  if not chunk then error(err, 0) end
  chunk(unpack(args))
  if not spec then app_mod.warn_unrun() end
  if spec then
    error(string.format("source %s '%s': the app script %s ended without calling app:run(), "
      .. "so the source could not start", spec.class, tostring(spec.fields.name), script), 0)
  end
  return 0
end

-- QHOST_JIT, from the environment (so a source process gets it too):
-- "off" runs everything in LuaJIT's interpreter, which tells a miscompiled
-- trace from a bug in a script; otherwise settings for jit.opt.start,
-- separated by commas ("hotloop=25,hotexit=5", "-fwd"), after the limits.
local function apply_jit_setting(value)
  if value == nil or value == "" then return end
  if value == "off" then
    jit.off()
    return
  end
  local settings = {}
  for setting in value:gmatch("[^,%s]+") do settings[#settings + 1] = setting end
  local ok, err = pcall(jit.opt.start, unpack(settings))
  if not ok then
    local why = tostring(err):gsub("^[^:]*:%d+: ", "")
    error(string.format('QHOST_JIT="%s": %s (expected "off" or settings such as "hotloop=56,-fwd")',
      value, why), 0)
  end
end

-- main.main({ script, args... }) -> exit code. In a source process any
-- error also goes to the report pipe, so the app can say why it failed.
function main.main(argv)
  jit.opt.start(unpack(JIT_LIMITS))
  apply_jit_setting(os.getenv("QHOST_JIT"))
  if not spawn.is_child() then return run_script(argv) end
  local ok, result = xpcall(run_script, error_text.traceback, argv)
  if ok then return result end
  spawn.child_report(error_text.text(result))
  error(result, 0)
end

return main
