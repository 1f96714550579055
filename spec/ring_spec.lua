-- lxc_ring: the appliance's byte layout, flow control, ring2pcap,
-- pcap_split --ring, and push LXC targets with their own filters.
local H = require("spec.helper")
local ffi = require("ffi")
local C = require("pushcap.ffi")

local function env(d)
   return ("cd %s && export PUSHCAP_ROOT=%s PATH=%s:%s:%s/analytics:$PATH TZ=UTC &&"):format(d, d, H.build, H.bin, H.root)
end

-- Puts every packet of a capture file into a ring (this process is the
-- producer); returns the count.
local function produce(ring_path, file, eof)
   local e = ffi.new("char[256]")
   local ring = C.pc_ring_open_tx(ring_path, 1, 10e9, 0, e, 256)
   assert(ring ~= nil, ffi.string(e))
   local fd = C.pc_open_read(file)
   local r = C.pc_reader_open(fd, e, 256)
   local p = ffi.new("pc_pkt[256]")
   local total, last = 0, 0
   while true do
      local n = C.pc_reader_next(r, p, 256)
      if n <= 0 then break end
      assert.are.equal(n, C.pc_ring_put(ring, p, n))
      total, last = total + n, p[n - 1].ts
   end
   if eof then C.pc_ring_put_eof(ring, last) end
   C.pc_reader_close(r)
   C.pc_close(fd)
   C.pc_ring_close(ring)
   return total
end

local function wait_for(path, text)
   for _ = 1, 100 do
      local s = H.slurp(path)
      if s and s:find(text, 1, true) then return true end
      H.sh("sleep 0.05")
   end
   return false
end

describe("lxc_ring", function()
   after_each(H.cleanup)

   it("lays the ring out as the appliance does", function()
      local d = H.tmpdir()
      local e = ffi.new("char[256]")
      local ring = C.pc_ring_open_tx(d .. "/ring", 1, 7e9, 0, e, 256)
      assert.is_not_nil(ring)
      C.pc_ring_close(ring)
      local b = H.slurp(d .. "/ring")
      assert.are.equal(12595200, #b)
      local function u32(off) local x = 0; for k = 4, 1, -1 do x = x * 256 + b:byte(off + k) end; return x end
      assert.are.equal(0x100, u32(0))        -- Version
      assert.are.equal(12595200, u32(4))     -- Size
      assert.are.equal(12288, u32(8))        -- SizePacket
      assert.are.equal(1024, u32(140))       -- Depth
      assert.are.equal(1023, u32(148))       -- Mask
      assert.are.equal(1, u32(156))          -- IsTxFlowControl
      assert.are.equal(7e9 % 2 ^ 32, u32(160)) -- TxTimeout (low word)
      assert.matches("/ring", b:sub(13, 140))
   end)

   it("stops the producer at 1023 slots when nobody reads, after the timeout", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", (function()
         local t = {}
         for k = 1, 1100 do t[k] = { ts = H.T0 + k, len = 100 } end
         return t
      end)())
      local e = ffi.new("char[256]")
      local ring = C.pc_ring_open_tx(d .. "/ring", 1, 2e8, 0, e, 256)
      local fd = C.pc_open_read(d .. "/in.pcap")
      local r = C.pc_reader_open(fd, e, 256)
      local p = ffi.new("pc_pkt[1100]")
      local n = C.pc_reader_next(r, p, 1100)
      local t0 = C.pc_mono_ns()
      assert.are.equal(1023, C.pc_ring_put(ring, p, n))
      assert.are.equal(1, C.pc_ring_stalled(ring))
      assert.is_true(C.pc_mono_ns() - t0 >= 2e8)
      C.pc_ring_close(ring)
      C.pc_reader_close(r)
      C.pc_close(fd)
   end)

   it("ring2pcap reads what a producer puts, through flow control, to the end mark", function()
      local d = H.tmpdir()
      H.sh(("%s/pcapgen -p finance -n 8000 -S 3 -o %s/in.pcap"):format(H.build, d))
      C.pc_ring_close(C.pc_ring_open_tx(d .. "/ring", 1, 10e9, 1, ffi.new("char[256]"), 256))
      H.sh(env(d) .. " { timeout 60 ring2pcap ring > out.pcap 2> r.log & }")
      assert.is_true(wait_for(d .. "/r.log", "attached"))
      assert.are.equal(8000, produce(d .. "/ring", d .. "/in.pcap", true))
      assert.is_true(wait_for(d .. "/r.log", "TotalPkt: 8000"))
      assert.is_true(H.slurp(d .. "/out.pcap") == H.slurp(d .. "/in.pcap"), "ring2pcap output differs")
   end)

   it("pcap_split --ring splits what arrives through a ring", function()
      local d = H.tmpdir()
      H.sh(("%s/pcapgen -p isp -n 6000 -s 200 -S 4 -o %s/in.pcap"):format(H.build, d))
      C.pc_ring_close(C.pc_ring_open_tx(d .. "/ring", 1, 10e9, 1, ffi.new("char[256]"), 256))
      H.sh(env(d) .. " { timeout 60 pcap_split --ring ring -o s/x_ --split-time 60e9 > split.log 2>&1 & }")
      assert.is_true(wait_for(d .. "/split.log", "RING ring"))
      H.sh("sleep 0.2")
      produce(d .. "/ring", d .. "/in.pcap", true)
      assert.is_true(wait_for(d .. "/split.log", "Complete"))
      local parts = {}
      for _, f in ipairs(H.ls(d .. "/s")) do parts[#parts + 1] = H.slurp(d .. "/s/" .. f):sub(25) end
      assert.are.equal(4, #parts)
      assert.is_true(table.concat(parts) == H.slurp(d .. "/in.pcap"):sub(25), "split output differs")
   end)

   it("push feeds several LXC rings from one config, each with its own filter", function()
      local d = H.tmpdir()
      local sh = function(cmd) return H.sh(env(d) .. " " .. cmd) end
      H.sh(("%s/pcapgen -p finance -n 20000 -s 5 -S 5 -o %s/in.pcap"):format(H.build, d))
      local out, rc = sh("stream_capture --store-size 64M --import in.pcap --name cap")
      assert.are.equal(0, rc, out)
      H.sh("mkdir -p " .. d .. "/opt/fmadio/etc")
      local f = io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w")
      f:write(([[return { Target = {
         { Desc = "r1", Mode = "LXC", Path = "%s/ring1", FilterBPF = "udp and dst port 10001" },
         { Desc = "r2", Mode = "lxc", Path = "%s/ring2", FilterBPF = "udp and dst port 10002" },
      } }]]):format(d, d))
      f:close()
      for _, r in ipairs({ "ring1", "ring2" }) do
         C.pc_ring_close(C.pc_ring_open_tx(d .. "/" .. r, 1, 30e9, 1, ffi.new("char[256]"), 256))
         sh(("{ timeout 60 ring2pcap %s > %s.pcap 2> %s.log & }"):format(r, r, r))
         assert.is_true(wait_for(d .. "/" .. r .. ".log", "attached"))
      end
      out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(0, rc, out)
      for k, r in ipairs({ "ring1", "ring2" }) do
         assert.is_true(wait_for(d .. "/" .. r .. ".log", "TotalPkt:"), r .. " saw no end mark")
         sh(("tcpdump --time-stamp-precision=nano -r in.pcap -w want%d.pcap 'udp and dst port 1000%d' 2>/dev/null"):format(k, k))
         assert.is_true(H.slurp(d .. "/" .. r .. ".pcap") == H.slurp(("%s/want%d.pcap"):format(d, k)), r .. " differs from tcpdump")
      end
      assert.matches("RING%[" .. d:gsub("%p", "%%%0") .. "/ring1", H.slurp(d .. "/mnt/store0/log/push_r1.cur"))
   end)

   it("an LXC worker with --ring-timeout-exit gives up on a stalled consumer", function()
      local d = H.tmpdir()
      local sh = function(cmd) return H.sh(env(d) .. " " .. cmd) end
      H.sh(("%s/pcapgen -p finance -n 3000 -S 6 -o %s/in.pcap"):format(H.build, d))
      sh("stream_capture --store-size 64M --import in.pcap --name cap")
      H.sh("mkdir -p " .. d .. "/opt/fmadio/etc")
      local f = io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w")
      f:write(([[return { TimeoutRing = 0.3e9, Target = {
         { Desc = "r", Mode = "LXC", Path = "%s/ring", StreamCat = "--ring-timeout-exit " },
      } }]]):format(d))
      f:close()
      -- nobody reads the ring: 1023 packets fit, then the producer waits 0.3 s
      local out, rc = sh("push_pcap.lua --worker 1 --offline cap")
      assert.are.equal(4, rc, out)
      assert.matches("RING wait for drain timeout", out)
   end)
end)
