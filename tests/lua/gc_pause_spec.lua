-- The collector's pause while an app runs (qhost.runtime.gc_pause): longer
-- for a small heap, never more growth than its headroom, set after every
-- cycle from what survived it, and put back when the run ends; a source's
-- process: shorter for a small heap.
local gc_pause = require("qhost.runtime.gc_pause")

describe("gc_pause", function()
  it("lets a heap grow by 3 times its size, never more than 64 MB beyond what the default pause would", function()
    assert.are.equal(400, gc_pause.for_heap(0))
    assert.are.equal(400, gc_pause.for_heap(512))
    assert.are.equal(400, gc_pause.for_heap(1300))          -- a stateless app's heap: 3.9 MB more
    assert.are.equal(400, gc_pause.for_heap(16 * 1024))
    assert.are.equal(300, gc_pause.for_heap(32 * 1024))
    assert.are.equal(200, gc_pause.for_heap(64 * 1024))
    assert.are.equal(200, gc_pause.for_heap(1024 * 1024))
    -- growth above the live heap never more than max(live, 64 MB), and
    -- never less as the heap grows
    local last = 0
    for _, kb in ipairs({ 100, 1000, 2047, 2048, 4095, 4096, 5000, 20000, 40000, 70000, 300000 }) do
      local growth = kb * (gc_pause.for_heap(kb) - 100) / 100
      assert.is_true(growth <= math.max(kb, 64 * 1024) + 1, tostring(kb))
      assert.is_true(growth >= last - 1, tostring(kb))
      last = growth
    end
  end)

  it("gives a source's small heap pause 150, a heap of 4 MB or more the default", function()
    assert.are.equal(150, gc_pause.for_source_heap(0))
    assert.are.equal(150, gc_pause.for_source_heap(472))
    assert.are.equal(150, gc_pause.for_source_heap(4095))
    assert.are.equal(200, gc_pause.for_source_heap(4096))
    assert.are.equal(200, gc_pause.for_source_heap(1024 * 1024))
  end)

  it("paces by the rule it is given, from the start and after each cycle", function()
    local before = collectgarbage("setpause", 200)
    local seen = {}
    local pacing = gc_pause.start(function(kb) seen[#seen + 1] = kb; return 173 end)
    assert.are.equal(173, collectgarbage("setpause", 173))   -- set at once
    collectgarbage("setpause", 111)
    collectgarbage("collect")
    assert.are.equal(173, collectgarbage("setpause", 173))   -- and again after a cycle
    assert.is_true(#seen >= 2 and seen[#seen] > 0, #seen .. " calls")
    pacing:stop()
    assert.are.equal(200, collectgarbage("setpause", before))
  end)

  it("sets the pause after each cycle until stopped, then puts the earlier pause back", function()
    local before = collectgarbage("setpause", 150)
    local pacing = gc_pause.start()
    collectgarbage("collect")
    collectgarbage("collect")
    assert.is_true(pacing.cycles >= 2, tostring(pacing.cycles))
    local want = gc_pause.for_heap(collectgarbage("count"))
    -- what the last cycle set is the collector's pause now
    assert.are.equal(pacing.pause, collectgarbage("setpause", pacing.pause))
    assert.is_true(math.abs(pacing.pause - want) <= 5, pacing.pause .. " vs " .. want)
    pacing:stop()
    assert.are.equal(150, collectgarbage("setpause", before))
    local cycles = pacing.cycles
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(cycles, pacing.cycles)
  end)
end)
