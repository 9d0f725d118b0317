-- Scenario 2, broker outage: the broker is stopped mid-run (kafka.sh stop,
-- a clean shutdown), kept down 10 s, and started again on the same data
-- and port, under two running counting pipelines (apps/counter.lua). With
-- the default settings the app logs the outage, waits, and catches up. With
-- producer message.timeout.ms = 5000 it stops with a clear error once its
-- outputs time out; a restart after the outage catches up. Either way:
-- nothing lost, the counts exact.
local L = require("lib")

local DOWN = 10

-- Lines of an app's log that tell of the outage (librdkafka's, relayed,
-- and the checkpoint's while it waits).
local function outage_lines(text)
  local n = 0
  for line in text:gmatch("[^\n]+") do
    if line:find("brokers are down", 1, true) or line:find("Connection refused", 1, true)
      or line:find("waiting for the broker", 1, true) then n = n + 1 end
  end
  return n
end

-- The app that waits keeps its group membership through the outage
-- (librdkafka's default session.timeout.ms, 45 s); the one that stops has
-- a short one, so that its restart need not wait out its old membership
-- (it could not leave the group while the broker was down).
local MODES = {
  { name = "waits", label = "defaults: waits", session_ms = 45000 },
  { name = "stops", label = "message.timeout.ms=5000: stops", extra = "message.timeout.ms=5000", session_ms = 10000 },
}

return function(env)
  -- About 1,000 messages a second: the outage falls early in a run of
  -- about 30 s, which goes on after it.
  local N = 30000
  local dir = L.mkdir(env.work .. "/broker_outage")
  for _, m in ipairs(MODES) do
    m.input, m.output, m.group = L.unique("outage-in"), L.unique("outage-out"), L.unique("outage")
    local code, err = L.run(dir, "fill.lua", { env = env.app_env,
      args = { topic = m.input, n = N, keys = 500, partitions = 4 } })
    if code ~= 0 then error("filling the input failed: " .. err, 0) end
    m.args = { input = m.input, output = m.output, group = m.group, state_dir = dir .. "/state-" .. m.name,
      pace = 100, idle = 10, session_ms = m.session_ms, extra = m.extra }
    m.notes, m.seen = {}, {}
  end
  for _, m in ipairs(MODES) do
    m.p = L.start(dir, "counter.lua", { env = env.app_env, args = m.args, name = "counter-" .. m.name })
  end
  for _, m in ipairs(MODES) do
    L.eventually(function() return L.progress(m.p:stderr(), m.seen) >= N / 6 or not m.p:alive() end, 300)
    if not m.p:alive() then
      m.notes[#m.notes + 1] = "the app ended before the outage: " .. tostring(L.last_error(m.p:stderr()))
    end
  end
  L.log("broker down for %d s", DOWN)
  local down_at = L.now()
  L.kafka_stop(env.kafka_dir)
  L.sleep(DOWN)
  local broker, kerr = L.kafka_start(env.kafka_dir)
  if not broker then error("Kafka did not start again: " .. tostring(kerr), 0) end
  local outage = L.now() - down_at
  L.log("broker up again after %.0f s", outage)

  -- The app that stopped is started again at once (after the outage),
  -- while the other goes on.
  for _, m in ipairs(MODES) do
    m.runs = 1
    if m.name == "stops" then
      m.code, m.why = m.p:finish(600)
      m.err = m.p:stderr()
      m.restart = L.start(dir, "counter.lua", { env = env.app_env, args = m.args, name = "counter-" .. m.name })
      m.runs = 2
    end
  end
  local rows = {}
  for _, m in ipairs(MODES) do
    local notes = m.notes
    if m.name == "waits" then
      m.code, m.why = m.p:finish(600)
      m.err = m.p:stderr()
    end
    local told = outage_lines(m.err)
    if told == 0 then notes[#notes + 1] = "the app did not log the outage" end
    local said = L.last_error(m.err)
    if m.name == "waits" then
      if m.code ~= 0 then
        notes[#notes + 1] = "the app did not wait: " .. (m.why or said or ("exit " .. tostring(m.code)))
      end
    else
      if m.code ~= 1 then
        notes[#notes + 1] = "the app did not stop with an error: " .. (m.why or ("exit " .. tostring(m.code)))
      elseif not (said and said:find("timed out", 1, true)) then
        notes[#notes + 1] = "unclear error: " .. tostring(said)
      end
      local c2, why2 = m.restart:finish(600)
      if c2 ~= 0 then notes[#notes + 1] = "the restart: " .. (why2 or L.last_error(m.restart:stderr()) or c2) end
    end
    local r = L.check_counts(env.broker, m.input, m.output, false)
    local stopped = m.name == "stops" and said and ("; the app stopped with \"" .. said:gsub("'changelog__[^']*'",
      "'<changelog>'"):gsub("'" .. m.output:gsub("%-", "%%-") .. "'", "'<output>'"):sub(1, 200) .. "\"") or ""
    rows[#rows + 1] = { scenario = "2. Broker outage (" .. m.label .. ")", runs = m.runs, input = r.input,
      output = r.output, lost = r.lost, duplicated = r.duplicated,
      state = r.state_wrong == 0 and "exact" or (r.state_wrong .. " wrong"),
      ok = #notes == 0 and r.lost == 0 and r.state_wrong == 0,
      note = string.format("broker stopped early in the run, unreachable %.0f s; %d log lines told of it%s%s",
        outage, told, stopped, #notes > 0 and ("; " .. table.concat(notes, "; ")) or "") }
  end
  return rows
end
