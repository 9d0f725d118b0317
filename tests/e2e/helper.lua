-- tests/e2e/helper.lua: runs `qhost run` as a user would, in a temporary
-- folder, and reads what it printed. Broker: QHOST_BROKER when set (the
-- test runner starts a real Kafka), else each run uses its embedded broker.
local H = {}

-- A clock with sub-second resolution (os.time has whole seconds), for
-- deadlines: the specs run inside the host, which provides it.
H.now = require("qhost.host").monotonic

local root = os.getenv("QHOST_TEST_ROOT") or "."
H.qhost = os.getenv("QHOST_BIN") or (root .. "/build/qhost")
H.broker = os.getenv("QHOST_BROKER")
H.mode = H.broker and "kafka" or "embedded"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.quote = sh_quote

function H.exec(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function H.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- A fresh folder for one test, under QHOST_TEST_TMP when set: the test
-- runner (tests/run-all.sh) gives each busted run a folder of its own and
-- removes it when every test passed.
function H.tmpdir()
  local base = os.getenv("QHOST_TEST_TMP") or os.getenv("TMPDIR") or "/tmp"
  local dir = H.exec("mktemp -d " .. sh_quote(base .. "/qhost-e2e.XXXXXX")):gsub("%s+$", "")
  return dir
end

-- 8 hex digits of this process's own: LuaJIT's math.random starts from the
-- same seed in every process (and specs reseed it for repeatable data), so
-- names made from it repeat across test processes started in the same
-- second, which then read each other's topics on a shared Kafka.
function H.process_token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(4)
  if f then f:close() end
  if not bytes or #bytes < 4 then error("tests/e2e/helper.lua: cannot read /dev/urandom") end
  return string.format("%02x%02x%02x%02x", bytes:byte(1, 4))
end

-- A name for topics and groups no other test, test process or earlier run
-- on the same broker uses.
local token = H.process_token()
local counter = 0
function H.unique(prefix)
  counter = counter + 1
  return string.format("%s-%d-%s-%d", prefix, os.time(), token, counter)
end

-- Runs `qhost run script args` in dir, waiting up to `timeout` seconds
-- (killed after that: a hang fails the test rather than the suite).
-- Returns { code, stdout, stderr }.
function H.run(dir, script, opts)
  opts = opts or {}
  local args = {}
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = sh_quote(a) end
  local env = ""
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. sh_quote(v) .. " " end
  local cmd = string.format("cd %s && %s timeout -s KILL %d %s run %s %s >stdout.txt 2>stderr.txt; echo $?",
    sh_quote(dir), env ~= "" and ("env " .. env) or "", opts.timeout or 120, sh_quote(H.qhost),
    sh_quote(script), table.concat(args, " "))
  local code = tonumber(H.exec(cmd):match("(%d+)%s*$"))
  return { code = code, stdout = H.read(dir .. "/stdout.txt") or "", stderr = H.read(dir .. "/stderr.txt") or "" }
end

-- Starts `qhost run` in the background (opts: args, env as H.run's);
-- returns a handle with pid, and :wait(timeout) -> { code, stdout, stderr },
-- :signal(name).
function H.start(dir, script, opts)
  opts = opts or {}
  local args = {}
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = sh_quote(a) end
  local env = ""
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. sh_quote(v) .. " " end
  local cmd = string.format(
    "cd %s && (%ssh -c 'echo $$ > pid.txt; exec \"$0\" \"$@\"' %s run %s %s >stdout.txt 2>stderr.txt; echo $? > rc.txt) </dev/null >/dev/null 2>&1 &",
    sh_quote(dir), env ~= "" and ("env " .. env) or "", sh_quote(H.qhost), sh_quote(script), table.concat(args, " "))
  os.remove(dir .. "/rc.txt")
  os.remove(dir .. "/pid.txt")
  os.execute(cmd)
  local pid
  for _ = 1, 500 do
    pid = tonumber(H.read(dir .. "/pid.txt") or "")
    if pid then break end
    H.sleep(0.01)
  end
  -- Recorded for the test runner, which ends whatever a failed test left running.
  local record = os.getenv("QHOST_TEST_PIDS")
  if pid and record then
    local f = io.open(record, "a")
    if f then f:write(pid, "\n"); f:close() end
  end
  local handle = { pid = pid, dir = dir }
  function handle:signal(sig) os.execute(string.format("kill -%s %d 2>/dev/null", sig, self.pid)) end
  function handle:wait(timeout)
    local deadline = H.now() + (timeout or 60)
    while H.now() <= deadline do
      local rc = H.read(dir .. "/rc.txt")
      if rc and rc:match("%d") then
        return { code = tonumber(rc:match("%d+")), stdout = H.read(dir .. "/stdout.txt") or "",
                 stderr = H.read(dir .. "/stderr.txt") or "" }
      end
      H.sleep(0.05)
    end
    self:signal("KILL")
    return nil
  end
  function handle:stdout() return H.read(dir .. "/stdout.txt") or "" end
  function handle:stderr() return H.read(dir .. "/stderr.txt") or "" end
  return handle
end

-- H.start inside a busted test, and whatever happens in the test, the app
-- does not outlive it. `finally` is busted's, which lives in the spec's
-- environment, not in this module's.
function H.start_guarded(finally, dir, script, opts)
  local p = H.start(dir, script, opts)
  finally(function()
    if p.pid and H.alive(p.pid) then
      p:signal("TERM")
      p:wait(30)
    end
  end)
  return p
end

function H.lines(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

function H.sleep(s)
  os.execute(string.format("sleep %.3f", s))
end

-- Waits until fn() is true, polling; false after timeout seconds.
function H.eventually(fn, timeout)
  local deadline = H.now() + (timeout or 30)
  while H.now() <= deadline do
    if fn() then return true end
    H.sleep(0.05)
  end
  return false
end

-- Live processes whose parent is pid (the source children of an app).
function H.children(pid)
  local out = H.exec(string.format("ps -o pid= --ppid %d", pid))
  local list = {}
  for p in out:gmatch("%d+") do list[#list + 1] = tonumber(p) end
  return list
end

function H.alive(pid)
  local stat = H.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  return not stat:match("^%d+ %b() Z")
end

-- Every pid whose command line mentions `needle` (to find orphans).
function H.pids_matching(needle)
  local out = H.exec("ps -eo pid=,args=")
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local pid, args = line:match("^%s*(%d+)%s+(.*)$")
    if pid and args:find(needle, 1, true) and not args:find("ps -eo", 1, true) then
      list[#list + 1] = tonumber(pid)
    end
  end
  return list
end

-- The partition of `key` among n by the Java client's partitioner (Kafka's
-- murmur2, positive, modulo n), which murmur2_random follows for a key.
-- Products in 64-bit cdata, kept to their low 32 bits.
local ffi = require("ffi")
local U32 = 0xffffffffULL
local function mul32(a, b) return (a * b) % 0x100000000ULL end
function H.java_partition(key, n)
  local m = 0x5bd1e995ULL
  local h = bit.bxor(0x9747b28cULL, #key) % 0x100000000ULL
  local len, i = #key, 1
  while i + 3 <= len do
    local b1, b2, b3, b4 = key:byte(i, i + 3)
    local k = ffi.cast("uint64_t", b1 + b2 * 256 + b3 * 65536) + ffi.cast("uint64_t", b4) * 16777216ULL
    k = mul32(k, m)
    k = bit.bxor(k, bit.rshift(k, 24))
    k = mul32(k, m)
    h = bit.bxor(mul32(h, m), k)
    i = i + 4
  end
  local rest = len - i + 1
  if rest == 3 then h = bit.bxor(h, ffi.cast("uint64_t", key:byte(i + 2)) * 65536ULL) end
  if rest >= 2 then h = bit.bxor(h, ffi.cast("uint64_t", key:byte(i + 1)) * 256ULL) end
  if rest >= 1 then h = mul32(bit.bxor(h, ffi.cast("uint64_t", key:byte(i))), m) end
  h = bit.bxor(h, bit.rshift(h, 13))
  h = mul32(h, m)
  h = bit.bxor(h, bit.rshift(h, 15))
  return tonumber(bit.band(h, U32) % 0x80000000ULL) % n
end

-- Lines of stdout parsed as JSON (print{ pretty = false }).
function H.json_lines(text)
  local json = require("qhost").json
  local list = {}
  for line in text:gmatch("[^\n]+") do
    local v = json.decode(line)
    if v then list[#list + 1] = v end
  end
  return list
end

-- The example CSV of the seed examples.
H.INPUT_CSV = "key,field,timestamp\nkey1,value1,1\nkey2,value2,2\nkey3,value3,3\nkey4,value4,4\nkey5,value5,5\n"

function H.copy_example(name, dir)
  H.write(dir .. "/" .. name, H.read(root .. "/examples/" .. name))
end

return H
