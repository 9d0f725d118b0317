-- tests/faults/run.lua: what survives a crash, in figures. Starts a real
-- Kafka of its own (tests/kafka/kafka.sh, in a temporary folder under
-- build/faults), runs each fault scenario on it, and prints one table:
-- scenario, runs, messages in, out, lost, duplicated, whether the state
-- counts were right, and the verdict; the same table goes to
-- build/faults/results.md. Stops its Kafka at the end.
--
--   build/qhost lua tests/faults/run.lua [--short] [--only=1,3] [--keep]
--
-- --short: fewer kills and fewer messages (CI); --only: some scenarios (by
-- number); --keep: leave the work folder (logs of every run). The last line
-- is "N passed, N failed" with each scenario one test (passed when its
-- figures are right); a scenario that cannot run here (the disk-full one
-- without root) is "not run", neither passed nor failed. Exit status 0
-- when none failed. QHOST_BIN: the qhost binary the apps run with (default
-- build/qhost).
local here = arg[0]:match("^(.*)/[^/]+$") or "."
package.path = here .. "/?.lua;" .. here .. "/../e2e/?.lua;" .. package.path
local L = require("lib")
local host = require("qhost.host")
-- librdkafka's warnings in the harness itself (an admin handle told its
-- isolation level) are not findings: the apps log at their own level.
require("qhost.log").set_level("ERROR")

local root = L.sh("cd " .. L.quote(here .. "/../..") .. " && pwd"):gsub("%s+$", "")
L.root, L.apps = root, root .. "/tests/faults/apps"
L.qhost = os.getenv("QHOST_BIN") or (root .. "/build/qhost")

local SCENARIOS = {
  { "app_killed", "1. App killed" },
  { "broker_outage", "2. Broker outage" },
  { "source_killed", "3. Source killed" },
  { "state_damaged", "4. State lost or damaged" },
  { "disk_full", "5. Disk full" },
  { "odd_messages", "6. Odd messages" },
}

local opts = { short = false, keep = false, only = nil }
for _, a in ipairs(arg) do
  if a == "--short" then opts.short = true
  elseif a == "--keep" then opts.keep = true
  elseif a:match("^%-%-only=") then
    opts.only = {}
    for n in a:match("=(.*)"):gmatch("%d+") do opts.only[tonumber(n)] = true end
  else
    io.stderr:write("usage: qhost lua tests/faults/run.lua [--short] [--only=1,3] [--keep]\n")
    os.exit(2)
  end
end

local function log(fmt, ...)
  io.stderr:write(os.date("%H:%M:%S "), string.format(fmt, ...), "\n")
end
L.log = log

-- Things to undo whatever happens (a mount, a stopped broker): run last,
-- newest first.
local cleanups = {}
function L.on_cleanup(fn) cleanups[#cleanups + 1] = fn end

math.randomseed(os.time() + host.getpid())
L.mkdir(root .. "/build/faults")
local work = L.sh("mktemp -d " .. L.quote(root .. "/build/faults/run.XXXXXX")):gsub("%s+$", "")
local kafka_dir = work .. "/kafka"
local started = L.now()

local function fmt_num(n)
  if type(n) ~= "number" then return tostring(n or "-") end
  local s = tostring(math.floor(n))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function table_text(rows)
  local lines = {
    "| Scenario | Runs | Messages in | Out | Lost | Duplicated | State counts | Verdict |",
    "|---|---:|---:|---:|---:|---:|---|---|",
  }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = string.format("| %s | %s | %s | %s | %s | %s | %s | %s |", r.scenario, fmt_num(r.runs),
      fmt_num(r.input), fmt_num(r.output), fmt_num(r.lost), fmt_num(r.duplicated), r.state or "-",
      r.verdict or (r.ok and "pass" or "FAIL"))
  end
  return table.concat(lines, "\n")
end

local rows, passed, failed, not_run = {}, 0, 0, 0
local function body()
  log("starting Kafka in %s", kafka_dir)
  local broker, err = L.kafka_start(kafka_dir)
  if not broker then error("could not start Kafka: " .. tostring(err), 0) end
  L.on_cleanup(function() L.kafka_stop(kafka_dir) end)
  log("Kafka at %s", broker)
  local env = { short = opts.short, work = work, broker = broker, kafka_dir = kafka_dir,
    app_env = { QHOST_BROKER = broker } }
  for i, s in ipairs(SCENARIOS) do
    if not opts.only or opts.only[i] then
      log("scenario %s", s[2])
      local t0 = L.now()
      local ok, result = xpcall(require(s[1]), debug.traceback, env)
      if not ok and result == L.INTERRUPTED then error(result, 0) end
      if not ok then
        log("scenario %s failed to run: %s", s[2], result)
        result = { { scenario = s[2], ok = false, note = "the scenario could not run: " .. result:match("[^\n]*") } }
      end
      local verdict = "pass"
      for _, r in ipairs(result) do
        rows[#rows + 1] = r
        if r.verdict and r.verdict:match("^not run") then verdict = verdict == "pass" and "not run" or verdict
        elseif not r.ok then verdict = "fail" end
      end
      if verdict == "pass" then passed = passed + 1 elseif verdict == "fail" then failed = failed + 1
      else not_run = not_run + 1 end
      log("scenario %s: %s (%.0f s)", s[2], verdict, L.now() - t0)
    end
  end
end

local ok, err = xpcall(body, debug.traceback)
for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
if not ok then
  log("the harness failed: %s", err)
  failed = failed + 1
end

local text = table_text(rows)
local notes = {}
for _, r in ipairs(rows) do
  if r.note and r.note ~= "" then notes[#notes + 1] = "- " .. r.scenario .. ": " .. r.note end
end
local doc = string.format("Fault scenarios (%s run, %s, %.0f s, qhost %s)\n\n%s\n\n%s\n", opts.short and "short"
  or "full", os.date("%Y-%m-%d"), L.now() - started, L.sh(L.quote(L.qhost) .. " version"):match("[%d.]+") or "?",
  text, table.concat(notes, "\n"))
print(doc)
L.write(root .. "/build/faults/results.md", doc)
if not opts.keep and ok then L.sh("rm -rf " .. L.quote(work)) else log("work folder kept: %s", work) end
print(string.format("%d passed, %d failed%s", passed, failed, not_run > 0 and (", " .. not_run .. " not run") or ""))
os.exit(failed == 0 and 0 or 1)
