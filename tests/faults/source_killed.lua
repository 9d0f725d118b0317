-- Scenario 3, source killed: a StatefulSource (apps/numbers.lua) feeding a
-- pipeline is SIGKILLed at random points; the app must report it (the
-- source's name and pid) and stop; each restart must go on from the
-- source's last flushed state; in the end every number is in the output.
-- "State counts" here: each restart began at a flushed state (a multiple
-- of the flush interval, no further back than the last flush).
local L = require("lib")
local json = require("qhost").json

return function(env)
  local LIMIT, KILLS, EVERY = env.short and 20000 or 100000, env.short and 2 or 5, 500
  local dir = L.mkdir(env.work .. "/source_killed")
  local name, group, output = L.unique("numbers"), L.unique("numbers"), L.unique("numbers-out")
  local args = { name = name, group = group, output = output, limit = LIMIT, every = EVERY, pace = 5 }
  local points = {}
  for i = 1, KILLS do points[i] = math.random(1000, LIMIT - 1000) end
  table.sort(points)
  local notes, kills, runs = {}, 0, 0
  for _, point in ipairs(points) do
    local p = L.start(dir, "numbers.lua", { env = env.app_env, args = args })
    runs = runs + 1
    local at = 0
    L.eventually(function()
      for n in p:stderr():gmatch("SOURCE (%d+)\n") do at = math.max(at, tonumber(n)) end
      return at >= point or not p:alive()
    end, 300)
    local children = L.children(p.pid)
    if not p:alive() or #children ~= 1 then
      notes[#notes + 1] = "the app ended before its source was killed: " .. (L.first_error(p:stderr()) or "?")
      p:signal("KILL")
      break
    end
    os.execute("kill -KILL " .. children[1])
    kills = kills + 1
    local code, why = p:finish(60)
    local said = p:stderr():find(string.format("Numbers '%s' (pid %d) was killed by SIGKILL", name, children[1]),
      1, true)
    if code ~= 1 or not said then
      notes[#notes + 1] = string.format("after the kill the app %s%s", why or ("exited " .. tostring(code)),
        said and "" or ", without naming the source and its pid")
    end
  end
  -- The last run: the source goes to its limit, the app stops when idle.
  local final = {}
  for k, v in pairs(args) do final[k] = v end
  final.idle, final.pace = 10, 0
  local code, err, _, why = L.run(dir, "numbers.lua", { env = env.app_env, args = final, timeout = 600 })
  runs = runs + 1
  if code ~= 0 then notes[#notes + 1] = "the last run: " .. (why or L.first_error(err) or ("exit " .. code)) end

  -- The output: every number, how often. The source's topic, in order,
  -- shows where each run began.
  local seen, out, dup = {}, 0, 0
  L.read_topic(env.broker, output, function(r)
    local n = json.decode(r.value).n
    out = out + 1
    if seen[n] then dup = dup + 1 end
    seen[n] = true
  end)
  local lost = 0
  for n = 0, LIMIT - 1 do if not seen[n] then lost = lost + 1 end end
  local prev, bad = -1, 0
  L.read_topic(env.broker, "source__" .. name, function(r)
    local n = json.decode(r.value).n
    if n ~= prev + 1 then
      -- A restart goes back to the last flush (a kill just after one
      -- shows no jump at all): a multiple of EVERY, at
      -- most two flushes back (a kill during a flush keeps the one before).
      if n % EVERY ~= 0 or n > prev + 1 or n < prev + 1 - 2 * EVERY then bad = bad + 1 end
    end
    prev = n
  end)
  return { { scenario = "3. Source killed", runs = runs, input = LIMIT, output = out, lost = lost, duplicated = dup,
    state = bad == 0 and "resumed at last flush" or (bad .. " wrong resumes"),
    ok = #notes == 0 and kills == KILLS and lost == 0 and bad == 0,
    note = string.format("SIGKILL of the source process at %d random points; the app stopped naming it and its pid "
      .. "each time; the source flushes its state every %d numbers%s", kills, EVERY,
      #notes > 0 and ("; " .. table.concat(notes, "; ")) or "") } }
end
