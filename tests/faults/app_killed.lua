-- Scenario 1, app killed: the counting pipeline (apps/counter.lua) on a
-- JSON input, SIGKILLed at random points of its input and restarted each
-- time, then run to the end. At-least-once: nothing lost, duplicates
-- counted. Exactly-once: nothing lost, nothing duplicated in the output
-- read read_committed. Both: every output carries the exact count of its
-- key (state recovered as it was at the last commit, never counting a
-- message twice).
local L = require("lib")

return function(env)
  local N, KILLS = env.short and 20000 or 200000, env.short and 3 or 20
  local dir = L.mkdir(env.work .. "/app_killed")
  local input = L.unique("killed-in")
  local code, err = L.run(dir, "fill.lua", { env = env.app_env,
    args = { topic = input, n = N, keys = 500, partitions = 4 } })
  if code ~= 0 then error("filling the input failed: " .. err, 0) end
  local expected, n_in = L.expected_counts(env.broker, input)

  local rows = {}
  for _, guarantee in ipairs({ "at-least-once", "exactly-once" }) do
    local output, group = L.unique("killed-out"), L.unique("killed")
    local args = { input = input, output = output, group = group, state_dir = dir .. "/state-" .. guarantee,
      guarantee = guarantee, pace = 2, commit_interval = 0.5 }
    -- The kill points: where in the input (the sum of the positions over
    -- the partitions) each run is killed.
    local points = {}
    for i = 1, KILLS do points[i] = math.random(1, n_in - 200) end
    table.sort(points)
    local notes, kills, seen = {}, 0, {}
    for _, point in ipairs(points) do
      local p = L.start(dir, "counter.lua", { env = env.app_env, args = args, name = "counter-" .. guarantee })
      -- A run that reaches the point is killed there; one that ends first
      -- (it failed) is a finding.
      local reached = L.eventually(function()
        return L.progress(p:stderr(), seen) >= point or not p:alive()
      end, 600)
      if not p:alive() then
        notes[#notes + 1] = "a run ended by itself: " .. (L.first_error(p:stderr()) or ("exit " .. tostring(p:code())))
        break
      end
      if not reached then notes[#notes + 1] = "a run made no progress in 600 s" end
      p:signal("KILL")
      p:wait(30)
      kills = kills + 1
    end
    -- The last run goes to the end of the input and stops when idle.
    local final_args = {}
    for k, v in pairs(args) do final_args[k] = v end
    final_args.idle, final_args.pace = 10, 0
    local fcode, ferr, _, why = L.run(dir, "counter.lua", { env = env.app_env, args = final_args, timeout = 900,
      name = "counter-" .. guarantee })
    if fcode ~= 0 then notes[#notes + 1] = "the last run: " .. (why or L.first_error(ferr) or ("exit " .. fcode)) end

    local r = L.check_counts(env.broker, input, output, guarantee == "exactly-once", expected, n_in)
    local ok = #notes == 0 and kills == KILLS and r.lost == 0 and r.state_wrong == 0
      and (guarantee == "at-least-once" or r.duplicated == 0)
    rows[#rows + 1] = { scenario = "1. App killed (" .. guarantee .. ")", runs = kills + 1, input = r.input,
      output = r.output, lost = r.lost, duplicated = r.duplicated,
      state = r.state_wrong == 0 and "exact" or (r.state_wrong .. " wrong"), ok = ok,
      note = string.format("SIGKILL at %d random points of %d messages%s", kills, n_in,
        #notes > 0 and ("; " .. table.concat(notes, "; ")) or "") }
  end
  return rows
end
