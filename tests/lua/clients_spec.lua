-- qhost.clients against a broker: the embedded one (librdkafka's mock
-- cluster, in this process), or a real Kafka when QHOST_BROKER is set (the
-- group tests then also run there). Every test has its own topics and
-- groups. Waits are upper bounds against hanging; checks are on exact values.
local ffi = require("ffi")
local C = require("qhost.ffi")
local clients = require("qhost.clients")
local host = require("qhost.host")

local BROKER = os.getenv("QHOST_BROKER")
if BROKER == "" then BROKER = nil end

local mock, boot
local counter = 0

-- A topic name no other test (or earlier run on a real Kafka) uses.
local function unique(prefix)
  counter = counter + 1
  return string.format("%s-%d-%d-%d", prefix, os.time(), math.random(1, 1e9), counter)
end

local function create_topic(name, partitions)
  if mock then return assert(mock:create_topic(name, partitions)) end
  local admin = assert(clients.admin({ ["bootstrap.servers"] = boot }))
  local ok, err = admin:create_topics({ { name = name, num_partitions = partitions } }, 30)
  -- A real broker reports a topic as created before every broker knows it.
  local deadline = host.monotonic() + 30
  while ok and host.monotonic() < deadline and admin:partitions(name, 5) ~= partitions do host.sleep(0.1) end
  admin:close()
  assert(ok, err)
end

local function producer(extra, opts)
  local conf = { ["bootstrap.servers"] = boot, ["linger.ms"] = 5 }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return assert(clients.producer(conf, opts))
end

local function consumer(group, extra)
  local conf = { ["bootstrap.servers"] = boot, ["group.id"] = group, ["auto.offset.reset"] = "earliest",
                 ["enable.auto.commit"] = false, ["enable.auto.offset.store"] = false,
                 ["fetch.wait.max.ms"] = 50 }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return assert(clients.consumer(conf))
end

-- Polls until `want` data messages arrived (30 s at most); returns them as
-- tables { partition, offset, key, value, headers } in arrival order.
local function consume(c, want)
  local got = {}
  local deadline = host.monotonic() + 30
  while #got < want and host.monotonic() < deadline do
    local n, msgs = c:poll(500, 100)
    for i = 0, n - 1 do
      local m = msgs[i]
      assert(m.err == 0, "consumer error: " .. (m.err ~= 0 and c:errstr(i) or ""))
      got[#got + 1] = {
        partition = m.partition, offset = tonumber(m.offset),
        key = m.key ~= nil and ffi.string(m.key, m.key_len) or nil,
        value = m.value ~= nil and ffi.string(m.value, m.value_len) or nil,
        headers = m.header_count > 0 and c:headers(i, m.header_count) or nil,
      }
    end
  end
  return got
end

setup(function()
  if BROKER then
    boot = BROKER
  else
    mock = assert(clients.mock_cluster(1))
    boot = mock:bootstraps()
  end
end)

teardown(function()
  if mock then mock:close() end
end)

describe("Producer headers", function()
  -- Header values converted with tostring are new strings that only the
  -- FFI arrays point at; the collector must not free them before the
  -- produce call has copied them (the regression of issue 8, item 1).
  it("keeps converted header values alive until librdkafka copied them, under GC pressure", function()
    local topic = unique("hdr-gc")
    create_topic(topic, 1)
    local p = producer()
    local N, H = 3000, 40
    -- Each message's headers are numbers, converted one after the other:
    -- with the collector running a whole cycle every few kilobytes, the
    -- strings made first are freed (and their memory reused by the next
    -- ones) unless something keeps them alive.
    local function headers_of(i)
      local h = {}
      if i % 2 == 0 then
        for j = 1, H do h["h" .. j] = i * H + j + 0.25 end
      else
        for j = 1, H do h[j] = { j % 3 == 0 and "dup" or ("h" .. j), i * H + j } end
      end
      return h
    end
    local pause = collectgarbage("setpause", 1)
    local stepmul = collectgarbage("setstepmul", 1000)
    local ok, err = pcall(function()
      for i = 1, N do
        assert(p:produce(topic, "v" .. i, "k" .. i, 0, nil, headers_of(i)))
      end
    end)
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
    assert(ok, err)
    assert(p:flush(30))
    p:close()

    local c = consumer(unique("g-hdr-gc"))
    assert(c:assign({ { topic = topic, partition = 0, offset = 0 } }))
    local got = consume(c, N)
    c:close()
    assert.are.equal(N, #got)
    local bad = {}
    for i, m in ipairs(got) do
      assert.are.equal("v" .. i, m.value)
      local sent, have = headers_of(i), m.headers or {}
      if i % 2 == 0 then
        local by_name = {}
        for _, pair in ipairs(have) do by_name[pair[1]] = pair[2] end
        if #have ~= H then bad[#bad + 1] = string.format("message %d: %d headers", i, #have) end
        for name, value in pairs(sent) do
          if by_name[name] ~= tostring(value) then
            bad[#bad + 1] = string.format("message %d header %s: %q, want %q", i, name,
              tostring(by_name[name]), tostring(value))
          end
        end
      else
        if #have ~= H then bad[#bad + 1] = string.format("message %d: %d headers", i, #have) end
        for j = 1, H do
          if not have[j] or have[j][1] ~= sent[j][1] or have[j][2] ~= tostring(sent[j][2]) then
            bad[#bad + 1] = string.format("message %d header %d: %s=%q, want %s=%q", i, j,
              tostring(have[j] and have[j][1]), tostring(have[j] and have[j][2]), sent[j][1], tostring(sent[j][2]))
          end
        end
      end
      if #bad > 5 then break end
    end
    assert.are.same({}, bad)
  end)
end)
