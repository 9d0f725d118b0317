-- Scenario 4, state lost or damaged: the counting pipeline
-- (apps/counter.lua) stopped at random points, and between runs its
-- state_dir deleted, or one kind of RocksDB file truncated to half in every
-- store (the table files, the write-ahead log, the MANIFEST, CURRENT). Each
-- run must rebuild what it lost from the changelog: every output carries
-- its key's exact count, as an undamaged run gives.
local L = require("lib")

-- In this order: a database opened again undamaged writes its log out to
-- table files, for the next cut.
local DAMAGE = {
  { "state_dir deleted", function(state) L.sh("rm -rf " .. L.quote(state)) end },
  { "none (a restart)", function() end },
  { "table files (*.sst) truncated", "*.sst" },
  { "write-ahead logs (*.log) truncated", "*.log" },
  { "MANIFEST truncated", "MANIFEST-*" },
  { "CURRENT truncated", "CURRENT" },
}

-- Truncates the files matching `pattern` in every store partition to half
-- their size (an empty file stays empty); returns how many.
local function truncate(state, pattern)
  local out = L.sh(string.format("n=0; for f in %s/*/*/*/%s; do [ -f \"$f\" ] || continue; "
    .. "truncate -s $(( $(stat -c %%s \"$f\") / 2 )) \"$f\"; n=$((n+1)); done; echo $n", L.quote(state), pattern))
  return tonumber(out:match("(%d+)%s*$")) or 0
end

return function(env)
  local N = env.short and 10000 or 50000
  local dir = L.mkdir(env.work .. "/state_damaged")
  local input, output, group = L.unique("damaged-in"), L.unique("damaged-out"), L.unique("damaged")
  local state = dir .. "/state"
  local code, err = L.run(dir, "fill.lua", { env = env.app_env,
    args = { topic = input, n = N, keys = 500, partitions = 4 } })
  if code ~= 0 then error("filling the input failed: " .. err, 0) end
  local expected, n_in = L.expected_counts(env.broker, input)
  local args = { input = input, output = output, group = group, state_dir = state, pace = 50 }

  -- Each run's stderr says how the damage before it was taken: stores
  -- found damaged and rebuilt from the changelog, or recovered from it.
  local notes, runs, seen, outcomes = {}, 0, {}, {}
  local function taken(i, stderr)
    local damage = DAMAGE[i]
    if not damage or damage[1]:match("^none") then return end
    local rebuilt = select(2, stderr:gsub("is damaged", ""))
    local recovered = stderr:find("recovered from changelog", 1, true) ~= nil
    outcomes[#outcomes + 1] = string.format("%s: %s", damage[1], rebuilt > 0
      and (rebuilt .. " stores found damaged, rebuilt from the changelog")
      or (recovered and "recovered from the changelog" or "NOT recovered"))
    if rebuilt == 0 and not recovered then notes[#notes + 1] = "no recovery after " .. damage[1] end
  end
  local function ended(p, code, why)
    if code ~= 0 then notes[#notes + 1] = string.format("run %d: %s", runs, why or L.first_error(p:stderr())
      or ("exit " .. tostring(code))) end
  end
  for i, damage in ipairs(DAMAGE) do
    -- A run up to a random point of the i-th part of the input, stopped
    -- cleanly (SIGTERM), then the damage.
    local point = math.floor((n_in - 200) * (i - 1 + math.random()) / #DAMAGE)
    local p = L.start(dir, "counter.lua", { env = env.app_env, args = args })
    runs = runs + 1
    -- (after its first batch at least: a stop has something to commit)
    L.eventually(function()
      local err = p:stderr()
      return (err:find("PROGRESS", 1, true) and L.progress(err, seen) >= point) or not p:alive()
    end, 120)
    p:signal("TERM")
    ended(p, p:finish(60))
    taken(i - 1, p:stderr())
    if type(damage[2]) == "function" then damage[2](state)
    elseif truncate(state, damage[2]) == 0 then notes[#notes + 1] = "no file to truncate for " .. damage[1] end
  end
  local final = {}
  for k, v in pairs(args) do final[k] = v end
  final.idle, final.pace = 10, 0
  local p = L.start(dir, "counter.lua", { env = env.app_env, args = final })
  runs = runs + 1
  ended(p, p:finish(600))
  taken(#DAMAGE, p:stderr())

  local r = L.check_counts(env.broker, input, output, false, expected, n_in)
  return { { scenario = "4. State lost or damaged", runs = runs, input = r.input, output = r.output, lost = r.lost,
    duplicated = r.duplicated, state = r.state_wrong == 0 and "exact" or (r.state_wrong .. " wrong"),
    ok = #notes == 0 and r.lost == 0 and r.state_wrong == 0,
    note = "between runs stopped at random points: " .. table.concat(outcomes, "; ")
      .. (#notes > 0 and ("; " .. table.concat(notes, "; ")) or "") } }
end
