-- qhost.runtime.gc_pause: how long LuaJIT's collector waits between cycles,
-- while an app or a source runs.
--
--   local pacing = gc_pause.start()   ...   pacing:stop()      (an app)
--   gc_pause.start(gc_pause.for_source_heap)                 (a source)
--
-- With the default pause (200) a cycle starts once the heap has doubled
-- since the last one ended. An app whose stores keep tens of MB of tables
-- alive (a join's or a window's cache) then marks and sweeps all of them
-- every time the messages have made that much garbage again: a fifth of the
-- join workload's CPU. A longer pause means fewer cycles, and a heap that
-- grows to live * pause / 100 before the next one. So after each cycle the
-- pause is set from what survived it: up to MAX_PAUSE for a small heap, and
-- never more growth than HEADROOM_KB above the default's (a big heap keeps
-- pause 200). A stateless app (1.3-1.5 MB of modules and closures survive)
-- so runs at pause 400, its heap growing by some 4 MB between cycles: each
-- cycle marks what lives and sweeps the string table, whatever the garbage,
-- and half as many cycles as with a 2 MB bound (the rule before) took 7%
-- off the benchmark pipeline's per-message work on the app's thread
-- (decode, filter, apply, encode of 2M messages without Kafka: 569 ns
-- against 613, medians of 6). In the whole app, on real Kafka, the gain is
-- smaller than the machine's noise (10 alternated runs: CPU medians 2.22 s
-- and 2.21 s); its peak RSS grew by 2.5 MB, which the consumer's smaller
-- prefetch (qhost.runtime.broker's byte bound) had freed.
--
-- A source's process is the other way round (for_source_heap): its heap
-- is small and its run loop makes strings (a key, a JSON value) that die
-- at once. At the default pause, every cycle made LuaJIT's string table
-- grow past its size and shrink back after the sweep, rehashing every
-- string twice (gdb, a loop making a key and a JSON value 1M times: 248
-- grows and 248 shrinks); at 150 it kept its size, and the benchmark's
-- counter source took 8-10% less CPU.
--
-- The end of a cycle is seen by a sentinel's finalizer: LuaJIT runs
-- finalizers at the end of a cycle, before it sets the next cycle's start
-- from the pause, and the heap's size at that point is what survived.
local gc_pause = {}

local DEFAULT_PAUSE = 200
local MAX_PAUSE = 400
local HEADROOM_KB = 64 * 1024

-- The pause for a heap of live_kb after a cycle: the heap may grow by
-- max(live, min(3 * live, HEADROOM)) before the next one.
function gc_pause.for_heap(live_kb)
  if live_kb <= 0 then return MAX_PAUSE end
  local growth = math.min(3 * live_kb, HEADROOM_KB)
  if growth < live_kb then growth = live_kb end
  return math.floor(100 + 100 * growth / live_kb)
end

-- For a source's process: 150 while what survived a cycle is small
-- (SMALL_SOURCE_HEAP_KB, cheap to mark twice as often), else the default.
local SMALL_SOURCE_HEAP_KB = 4 * 1024
function gc_pause.for_source_heap(live_kb)
  if live_kb < SMALL_SOURCE_HEAP_KB then return 150 end
  return DEFAULT_PAUSE
end

local Pacing = {}
Pacing.__index = Pacing

local function arm(self)
  local sentinel = newproxy(true)
  getmetatable(sentinel).__gc = function()
    if not self.running then return end
    local pause = self.for_heap(collectgarbage("count"))
    collectgarbage("setpause", pause)
    self.pause, self.cycles = pause, self.cycles + 1
    arm(self)
  end
end

-- gc_pause.start(for_heap = gc_pause.for_heap) -> a pacing that sets the
-- pause for_heap gives after every cycle until its stop(), which puts the
-- pause it found back.
function gc_pause.start(for_heap)
  for_heap = for_heap or gc_pause.for_heap
  local first = for_heap(collectgarbage("count"))
  local self = setmetatable({ running = true, cycles = 0, previous = collectgarbage("setpause", first),
    pause = first, for_heap = for_heap }, Pacing)
  arm(self)
  return self
end

function Pacing:stop()
  if not self.running then return end
  self.running = false
  collectgarbage("setpause", self.previous or DEFAULT_PAUSE)
end

return gc_pause
