-- Scenario 5, disk full: the counting pipeline (apps/counter.lua) with a
-- state that grows (1 KB per message) in a state_dir on an 8 MB tmpfs. When
-- the disk fills, the app must stop with a clear error, and no offset may
-- be committed past what was stored (in the changelog, or in the store
-- itself without one). Then the rest of the input comes, and with room
-- again (the tmpfs made larger) a restart finishes it: nothing lost, and
-- the counts go on exactly from the stored state. Twice: with the
-- changelog (the default) and with use_changelog_topics = false. Mounting
-- needs root: otherwise the scenario is not run.
local L = require("lib")

-- The committed offset of each partition of `topic` for `group`.
local function committed(broker, group, topic, partitions)
  local clients = require("qhost.kafka.clients")
  local c = assert(clients.consumer({ ["bootstrap.servers"] = broker, ["group.id"] = group }))
  local list = {}
  for p = 0, partitions - 1 do list[#list + 1] = { topic = topic, partition = p } end
  local got = assert(c:committed(list, 30))
  c:close()
  local out = {}
  for _, tp in ipairs(got) do out[tp.partition] = tp.offset end
  return out
end

-- Per input partition, the next offset after the last message whose state
-- change is in the changelog (its __processed_tp_offsets__ header).
local function changelog_reach(broker, changelog, input)
  local json = require("qhost").json
  local reach = {}
  L.read_topic(broker, changelog, function(r)
    for _, h in ipairs(r.headers or {}) do
      if h[1] == "__processed_tp_offsets__" and h[2] then
        local at = (json.decode(h[2]) or {})[input]
        if at and at + 1 > (reach[r.partition] or 0) then reach[r.partition] = at + 1 end
      end
    end
  end)
  return reach
end

return function(env)
  local uid = L.sh("id -u"):match("%d+")
  if uid ~= "0" then
    return { { scenario = "5. Disk full", verdict = "not run (needs root)", ok = true,
      note = "mounting a size-limited tmpfs needs root" } }
  end
  local N = env.short and 20000 or 50000
  local dir = L.mkdir(env.work .. "/disk_full")
  local function fill(input, from)
    local code, err = L.run(dir, "fill.lua", { env = env.app_env,
      args = { topic = input, n = N / 2, from = from, keys = 500, partitions = 4 } })
    if code ~= 0 then error("filling the input failed: " .. err, 0) end
  end

  local rows = {}
  for _, changelog in ipairs({ true, false }) do
    local input = L.unique("disk-in")
    fill(input, 1)
    local mnt = L.mkdir(dir .. "/mnt-" .. tostring(changelog))
    local _, mounted = L.sh("mount -t tmpfs -o size=8m tmpfs " .. L.quote(mnt))
    if not mounted then error("cannot mount a tmpfs on " .. mnt, 0) end
    L.on_cleanup(function() L.sh("umount " .. L.quote(mnt)) end)
    local output, group = L.unique("disk-out"), L.unique("disk")
    local args = { input = input, output = output, group = group, state_dir = mnt .. "/state", pad = 1000,
      changelog = tostring(changelog), idle = 10, pace = 20, commit_interval = 0.2 }
    local notes = {}
    -- The run that fills the disk: it must stop by itself, with the error.
    local c1, err1, _, why = L.run(dir, "counter.lua", { env = env.app_env, args = args, timeout = 300 })
    local said = L.last_error(err1) or ""
    if c1 ~= 1 then notes[#notes + 1] = "the run on the full disk " .. (why or ("exited " .. tostring(c1))) end
    if not said:find("No space left on device", 1, true) or not said:find(mnt, 1, true) then
      notes[#notes + 1] = "unclear error: " .. said
    end
    -- Nothing committed beyond the stored state.
    local offsets = committed(env.broker, group, input, 4)
    local beyond = 0
    if changelog then
      local reach = changelog_reach(env.broker, "changelog__" .. group .. "--" .. input .. "--default", input)
      for p = 0, 3 do
        if (offsets[p] or -1) > (reach[p] or 0) then beyond = beyond + (offsets[p] - (reach[p] or 0)) end
      end
    end
    if beyond > 0 then notes[#notes + 1] = beyond .. " messages committed beyond the changelog" end
    local at = 0
    for p = 0, 3 do at = at + math.max(0, offsets[p] or 0) end
    -- The rest of the input, and room again: the restart finishes it.
    fill(input, N / 2 + 1)
    L.sh("mount -o remount,size=512m " .. L.quote(mnt))
    local c2, err2, _, why2 = L.run(dir, "counter.lua", { env = env.app_env, args = args, timeout = 600 })
    if c2 ~= 0 then notes[#notes + 1] = "the run with room again: " .. (why2 or L.first_error(err2) or c2) end
    L.sh("umount " .. L.quote(mnt))
    local r = L.check_counts(env.broker, input, output, false)
    rows[#rows + 1] = { scenario = "5. Disk full (" .. (changelog and "changelog" or "no changelog") .. ")", runs = 2,
      input = r.input, output = r.output, lost = r.lost, duplicated = r.duplicated,
      state = r.state_wrong == 0 and "exact" or (r.state_wrong .. " wrong"),
      ok = #notes == 0 and r.lost == 0 and r.state_wrong == 0,
      note = string.format("state_dir on an 8 MB tmpfs filled after ~%d of the first %d messages; the app stopped "
        .. "with \"%s\"%s", at, N / 2, L.replace(said, mnt .. "/state", "<state_dir>"):sub(1, 200),
        #notes > 0 and ("; " .. table.concat(notes, "; ")) or "") }
  end
  return rows
end
