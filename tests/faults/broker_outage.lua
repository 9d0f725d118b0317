-- Scenario 2, broker outage: the broker is stopped mid-run (kafka.sh stop,
-- a clean shutdown), kept down 10 s, and started again on the same data
-- and port, under the running counting pipeline (apps/counter.lua). With
-- the default settings the app logs the outage, waits, and catches up. With
-- producer message.timeout.ms = 5000 it stops with a clear error once its
-- outputs time out; a restart after the outage catches up. Either way:
-- nothing lost, the counts exact.
local L = require("lib")

local DOWN = 10

-- Lines of an app's log that tell of the outage (librdkafka's, relayed).
local function outage_lines(text)
  local n = 0
  for line in text:gmatch("[^\n]+") do
    if line:find("brokers are down", 1, true) or line:find("Connection refused", 1, true) then n = n + 1 end
  end
  return n
end

return function(env)
  local N = env.short and 20000 or 100000
  local dir = L.mkdir(env.work .. "/broker_outage")
  local rows = {}
  for _, mode in ipairs({ "waits", "stops" }) do
    local input, output, group = L.unique("outage-in"), L.unique("outage-out"), L.unique("outage")
    local code, err = L.run(dir, "fill.lua", { env = env.app_env,
      args = { topic = input, n = N, keys = 500, partitions = 4 } })
    if code ~= 0 then error("filling the input failed: " .. err, 0) end
    -- About 2,000 messages a second: the outage falls mid-run.
    local args = { input = input, output = output, group = group, state_dir = dir .. "/state-" .. mode,
      pace = 50, idle = 20, session_ms = 45000 }
    if mode == "stops" then args.extra = "message.timeout.ms=5000" end
    local notes, runs, seen = {}, 1, {}
    local p = L.start(dir, "counter.lua", { env = env.app_env, args = args, name = "counter-" .. mode })
    L.eventually(function() return L.progress(p:stderr(), seen) >= N / 4 or not p:alive() end, 300)
    if not p:alive() then notes[#notes + 1] = "the app ended before the outage: " .. tostring(L.last_error(p:stderr())) end
    L.log("broker down for %d s", DOWN)
    local down_at = L.now()
    L.kafka_stop(env.kafka_dir)
    L.sleep(DOWN)
    local broker, kerr = L.kafka_start(env.kafka_dir)
    if not broker then error("Kafka did not start again: " .. tostring(kerr), 0) end
    local outage = L.now() - down_at
    L.log("broker up again after %.0f s", outage)
    local told = outage_lines(p:stderr())
    if told == 0 then notes[#notes + 1] = "the app did not log the outage" end
    local c, why = p:finish(600)
    local said = L.last_error(p:stderr())
    if mode == "waits" then
      if c ~= 0 then notes[#notes + 1] = "the app did not wait: " .. (why or said or ("exit " .. tostring(c))) end
    else
      if c ~= 1 then notes[#notes + 1] = "the app did not stop with an error: " .. (why or ("exit " .. tostring(c)))
      elseif not (said and said:find("timed out", 1, true)) then
        notes[#notes + 1] = "unclear error: " .. tostring(said)
      end
      -- After the outage, a restart catches up.
      runs = runs + 1
      local c2, err2, _, why2 = L.run(dir, "counter.lua", { env = env.app_env, args = args, timeout = 600,
        name = "counter-" .. mode })
      if c2 ~= 0 then notes[#notes + 1] = "the restart: " .. (why2 or L.last_error(err2) or c2) end
    end
    local r = L.check_counts(env.broker, input, output, false)
    rows[#rows + 1] = { scenario = "2. Broker outage (" .. (mode == "waits" and "defaults: waits"
      or "message.timeout.ms=5000: stops") .. ")", runs = runs, input = r.input, output = r.output, lost = r.lost,
      duplicated = r.duplicated, state = r.state_wrong == 0 and "exact" or (r.state_wrong .. " wrong"),
      ok = #notes == 0 and r.lost == 0 and r.state_wrong == 0,
      note = string.format("broker stopped at a quarter of the input, unreachable %.0f s; %d log lines told of it%s%s",
        outage, told, mode == "stops" and said and ("; the app stopped with \"" .. L.replace(said, output,
          "<output>"):sub(1, 200) .. "\"") or "", #notes > 0 and ("; " .. table.concat(notes, "; ")) or "") }
  end
  return rows
end
