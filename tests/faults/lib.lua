-- tests/faults/lib.lua: what the fault scenarios share. Runs `qhost run` as
-- a user would (in the foreground, or in the background to be killed),
-- starts and stops the harness's own Kafka (tests/kafka/kafka.sh), reads
-- topics back, and checks the per-key counting pipeline (apps/counter.lua)
-- message by message: lost, duplicated, state counts.
local host = require("qhost.host")
local json = require("qhost").json
local topic_reader = require("qhost.kafka.topic_reader")

local L = {}

L.root = os.getenv("QHOST_TEST_ROOT") or "."
L.qhost = os.getenv("QHOST_BIN") or (L.root .. "/build/qhost")
L.apps = L.root .. "/tests/faults/apps"
L.now = host.monotonic

-- Raised when the harness is asked to stop (Ctrl-C): the scenario ends,
-- and the cleanup still runs.
L.INTERRUPTED = "interrupted"

function L.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its output (stdout and stderr) and whether
-- it exited 0.
function L.sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return out:gsub("rc=%d+%s*$", ""), rc == 0
end

-- text with every `from` replaced by `to` (plain text, no patterns).
function L.replace(text, from, to)
  local out, i = {}, 1
  while true do
    local a, b = text:find(from, i, true)
    if not a then break end
    out[#out + 1] = text:sub(i, a - 1) .. to
    i = b + 1
  end
  out[#out + 1] = text:sub(i)
  return table.concat(out)
end

function L.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function L.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function L.mkdir(path)
  assert(os.execute("mkdir -p " .. L.quote(path)) == 0, "cannot make " .. path)
  return path
end

function L.check_interrupt()
  if host.stop_requested() > 0 then error(L.INTERRUPTED, 0) end
end

function L.sleep(s)
  L.check_interrupt()
  host.sleep(s)
end

-- Waits until fn() is true, polling; false after timeout seconds.
function L.eventually(fn, timeout)
  local deadline = L.now() + timeout
  while L.now() <= deadline do
    if fn() then return true end
    L.sleep(0.05)
  end
  return fn() and true or false
end

-- A name no earlier run used, for topics and groups on a broker that may
-- hold older runs' data (tests/e2e/helper.lua's).
L.unique = require("helper").unique

-- key=value arguments of an app, in a stable order.
local function app_args(args)
  local keys, list = {}, {}
  for k in pairs(args or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do list[#list + 1] = L.quote(k .. "=" .. tostring(args[k])) end
  return table.concat(list, " ")
end

local function env_prefix(env)
  local list = {}
  for k, v in pairs(env or {}) do list[#list + 1] = k .. "=" .. L.quote(v) end
  return #list > 0 and ("env " .. table.concat(list, " ") .. " ") or ""
end

-- Starts `qhost run <app> key=value...` in the background in `dir` (its
-- stdout and stderr in dir/<name>.out and .err). opts: args (a table),
-- env, name. Returns a handle: pid, :alive(), :signal(sig),
-- :wait(timeout) -> exit code (nil: still running), :stderr(), :stdout().
function L.start(dir, app, opts)
  opts = opts or {}
  local name = opts.name or app:match("([^/]+)%.lua$")
  local base = dir .. "/" .. name
  os.remove(base .. ".rc")
  os.remove(base .. ".pid")
  local script = app:sub(1, 1) == "/" and app or (L.apps .. "/" .. app)
  local cmd = string.format("cd %s && (%ssh -c 'echo $$ > %s; exec \"$0\" \"$@\"' %s run %s %s >>%s 2>>%s; "
    .. "echo $? > %s) </dev/null >/dev/null 2>&1 &", L.quote(dir), env_prefix(opts.env), L.quote(base .. ".pid"),
    L.quote(L.qhost), L.quote(script), app_args(opts.args), L.quote(base .. ".out"), L.quote(base .. ".err"),
    L.quote(base .. ".rc"))
  -- Where this run's output starts in the (appended) files.
  local out_at, err_at = #(L.read(base .. ".out") or ""), #(L.read(base .. ".err") or "")
  os.execute(cmd)
  local pid
  for _ = 1, 500 do
    pid = tonumber(L.read(base .. ".pid") or "")
    if pid then break end
    host.sleep(0.01)
  end
  assert(pid, "could not start " .. app)
  local h = { pid = pid, name = name, base = base }
  function h:stderr() return (L.read(base .. ".err") or ""):sub(err_at + 1) end
  function h:stdout() return (L.read(base .. ".out") or ""):sub(out_at + 1) end
  function h:code()
    local rc = L.read(base .. ".rc")
    return rc and tonumber(rc:match("%d+")) or nil
  end
  function h:alive() return self:code() == nil end
  function h:signal(sig) os.execute(string.format("kill -%s %d 2>/dev/null", sig, self.pid)) end
  function h:wait(timeout)
    L.eventually(function() return self:code() ~= nil end, timeout or 60)
    return self:code()
  end
  -- Waits for the run to end; a run still going after `timeout` is killed
  -- (a stalled app is a failure of the scenario, not of the harness).
  function h:finish(timeout)
    local code = self:wait(timeout)
    if code == nil then
      self:signal("KILL")
      self:wait(30)
      return nil, "still running after " .. timeout .. " s (killed)"
    end
    return code
  end
  return h
end

-- Runs an app to its end; returns its exit code (nil when it had to be
-- killed after opts.timeout, default 300 s), its stderr and its stdout.
function L.run(dir, app, opts)
  local h = L.start(dir, app, opts)
  local code, why = h:finish((opts and opts.timeout) or 300)
  return code, h:stderr(), h:stdout(), why
end

-- The processes started by L.start that are still alive are killed by the
-- caller through their handles; this finds a parent's children (the
-- source processes of an app).
function L.children(pid)
  local out = L.sh(string.format("ps -o pid= --ppid %d", pid))
  local list = {}
  for p in out:gmatch("%d+") do list[#list + 1] = tonumber(p) end
  return list
end

-- Kafka -------------------------------------------------------------------

local KAFKA = L.root .. "/tests/kafka/kafka.sh"

-- Starts a broker whose files are in dir (the same dir again: the same
-- broker on the same data). Returns its address, or nil, the error.
function L.kafka_start(dir)
  local out, ok = L.sh(KAFKA .. " start " .. L.quote(dir) .. " 2>" .. L.quote(dir .. ".start.log"))
  if not ok then return nil, (L.read(dir .. ".start.log") or "") .. out end
  return out:match("(127%.0%.0%.1:%d+)")
end

function L.kafka_stop(dir)
  return L.sh(KAFKA .. " stop " .. L.quote(dir))
end

-- Topics ------------------------------------------------------------------

-- Reads a whole topic: fn(record) for each, in offset order per partition.
-- committed: read_committed (what exactly-once promises). Returns the count.
function L.read_topic(broker, topic, fn, committed)
  local config = { ["bootstrap.servers"] = broker }
  if committed then config["isolation.level"] = "read_committed" end
  local n, err = topic_reader.read_to_end(config, topic, { timeout = 300, on_record = fn })
  if not n then error("cannot read topic " .. topic .. ": " .. tostring(err), 0) end
  return n
end

-- The input of the counting pipeline as it is in its topic: for each
-- message number v, the count its key must have after it (its rank among
-- its key's messages, in partition order). Returns expected, count.
function L.expected_counts(broker, topic)
  local expected, per_key, n = {}, {}, 0
  L.read_topic(broker, topic, function(r)
    n = n + 1
    -- (an odd message with no such value counts as input, nothing else)
    local v = r.value and json.decode(r.value)
    if type(v) ~= "table" or not v.v then return end
    per_key[v.k] = (per_key[v.k] or 0) + 1
    expected[v.v] = per_key[v.k]
  end)
  return expected, n
end

-- Waits until no transaction is open on `topic` (at most `timeout` s):
-- a read_committed reader stops at the oldest open transaction (the last
-- stable offset), and a killed instance's transaction stays open until
-- its transaction.timeout.ms (and the broker's next check) aborts it.
-- Returns true when every partition's last stable offset is its end.
function L.settle_transactions(broker, topic, timeout)
  local clients = require("qhost.kafka.clients")
  local stable = assert(clients.admin({ ["bootstrap.servers"] = broker, ["isolation.level"] = "read_committed" }))
  local all = assert(clients.admin({ ["bootstrap.servers"] = broker, ["isolation.level"] = "read_uncommitted" }))
  local parts = assert(all:partitions(topic, 30))
  local settled = L.eventually(function()
    for p = 0, parts - 1 do
      local _, lso = stable:watermarks(topic, p, 30)
      local _, high = all:watermarks(topic, p, 30)
      if not lso or lso ~= high then return false end
    end
    return true
  end, timeout)
  stable:close()
  all:close()
  return settled
end

-- Reads the counting pipeline's output ({ k, v, n } per input v) and
-- compares it with the input: { input, output, lost, duplicated,
-- state_wrong } where state_wrong counts outputs whose n is not the
-- count the state must have given (every copy of a duplicate too).
function L.check_counts(broker, input_topic, output_topic, committed, expected, n_in)
  if not expected then expected, n_in = L.expected_counts(broker, input_topic) end
  if committed and not L.settle_transactions(broker, output_topic, 120) then
    error("transactions on " .. output_topic .. " still open after 120 s", 0)
  end
  local seen, out, dup, wrong = {}, 0, 0, 0
  L.read_topic(broker, output_topic, function(r)
    local v = json.decode(r.value)
    out = out + 1
    if seen[v.v] then dup = dup + 1 end
    seen[v.v] = true
    if expected[v.v] ~= v.n then wrong = wrong + 1 end
  end, committed)
  local lost = 0
  for v in pairs(expected) do if not seen[v] then lost = lost + 1 end end
  return { input = n_in, output = out, lost = lost, duplicated = dup, state_wrong = wrong }
end

-- The sum of the input's end offsets: where a group that read it all is.
function L.end_offsets(broker, topic)
  local clients = require("qhost.kafka.clients")
  local admin = assert(clients.admin({ ["bootstrap.servers"] = broker }))
  local parts = assert(admin:partitions(topic, 30))
  local total = 0
  for p = 0, parts - 1 do
    local _, high = admin:watermarks(topic, p, 30)
    total = total + (high or 0)
  end
  admin:close()
  return total
end

-- How far the counting pipeline got in its input: the sum over its
-- partitions of the next offset to process, from its PROGRESS lines in
-- `text`. `seen` (a table kept across the runs of one group) holds the
-- furthest position of each partition so far: a restarted run goes back to
-- the committed offsets, and only counts again once past them.
function L.progress(text, seen)
  for line in text:gmatch("PROGRESS ([^\n]*)\n") do
    for p, at in line:gmatch("(%d+):(%d+)") do
      p, at = tonumber(p), tonumber(at)
      if at > (seen[p] or 0) then seen[p] = at end
    end
  end
  local sum = 0
  for _, at in pairs(seen) do sum = sum + at end
  return sum
end

-- The lines of an app's stderr with this text (for a scenario's notes).
function L.grep(text, needle)
  local list = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(needle, 1, true) then list[#list + 1] = line end
  end
  return list
end

-- The first line of an error an app logged (ERROR level), without its
-- time and pid.
function L.first_error(text)
  local line = text:match("ERROR qhost%[%d+%]: ([^\n]+)")
  return line
end

-- The last such line: the error that ended the run.
function L.last_error(text)
  local last
  for line in text:gmatch("ERROR qhost%[%d+%]: ([^\n]+)") do last = line end
  return last
end

return L
