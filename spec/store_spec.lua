-- The capture store: import, stream_cat, ring wrap, lapped readers, a
-- killed writer, a follower, a corrupt chunk, and the third-party captures.
local H = require("spec.helper")
local ffi = require("ffi")
local C = require("pushcap.ffi")

-- A store under a fresh root; returns the root and a function running a
-- command with PUSHCAP_ROOT set to it.
local function new_root(store_args)
   local d = H.tmpdir()
   local env = ("export PUSHCAP_ROOT=%s PATH=%s:%s:$PATH TZ=UTC &&"):format(d, H.build, H.bin)
   local function sh(cmd) return H.sh(("cd %s && %s %s"):format(d, env, cmd)) end
   if store_args then
      local out, rc = sh("stream_capture --create-store " .. store_args)
      assert.are.equal(0, rc, out)
   end
   return d, sh
end

local function gen(d, name, args)
   local out, rc = H.sh(("%s/pcapgen %s -o %s/%s"):format(H.build, args, d, name))
   assert.are.equal(0, rc, out)
   return d .. "/" .. name
end

local function same_packets(a, b)
   assert.are.equal(#a, #b, "packet counts differ")
   for k = 1, #a do
      if a[k].ts ~= b[k].ts or a[k].data ~= b[k].data or a[k].wire ~= b[k].wire then
         error(("packet %d differs: ts %s/%s caplen %d/%d wire %d/%d"):format(k, a[k].ts, b[k].ts, a[k].caplen,
            b[k].caplen, a[k].wire, b[k].wire))
      end
   end
end

describe("capture store", function()
   after_each(H.cleanup)

   it("imports a capture that stream_cat gives back byte for byte", function()
      local d, sh = new_root()
      local input = gen(d, "in.pcap", "-p isp -n 20000 -S 4")
      local out, rc = sh("stream_capture --import in.pcap --name day1")
      assert.are.equal(0, rc, out)
      assert.matches("created store", out)
      out, rc = sh("stream_cat day1 > out.pcap")
      assert.are.equal(0, rc, out)
      assert.matches("StartChunkID: 0", out)
      assert.is_true(H.slurp(d .. "/out.pcap") == H.slurp(input), "stream_cat output differs from the input")
      out = sh("stream_cat --list")
      assert.matches("day1 +0 +%d+ +%d+ +20000 ", out)
   end)

   it("imports gzip, zstd and lz4 files and several files into one capture", function()
      local d, sh = new_root("64M")
      gen(d, "a.pcap", "-p finance -n 3000 -S 1")
      gen(d, "b.pcap", "-p finance -n 2000 -S 2 -t 1700000100000000000")
      sh("gzip -k a.pcap && zstd -q b.pcap && lz4 -q a.pcap a.pcap.lz4")
      local out, rc = sh("stream_capture --import a.pcap.gz b.pcap.zst --name two")
      assert.are.equal(0, rc, out)
      sh("stream_cat two > two.pcap")
      local want = H.read(d .. "/a.pcap")
      for _, p in ipairs(H.read(d .. "/b.pcap")) do want[#want + 1] = p end
      same_packets(want, H.read(d .. "/two.pcap"))
      out, rc = sh("stream_capture --import a.pcap.lz4 --name three && stream_cat three > three.pcap")
      assert.are.equal(0, rc, out)
      same_packets(H.read(d .. "/a.pcap"), H.read(d .. "/three.pcap"))
   end)

   it("stream_cat --chunked | pcap_split makes the same files as stream_cat | pcap_split", function()
      local d, sh = new_root("64M")
      gen(d, "in.pcap", "-p isp -n 30000 -s 200 -S 6")
      sh("stream_capture --import in.pcap --name c")
      local out, rc = sh("stream_cat --chunked c | pcap_split -o chunked/x_ --split-time 60e9 > /dev/null && "
         .. "stream_cat c | pcap_split -o plain/x_ --split-time 60e9 > /dev/null")
      assert.are.equal(0, rc, out)
      local files = H.ls(d .. "/plain")
      assert.are.equal(4, #files)
      assert.are.same(files, H.ls(d .. "/chunked"))
      for _, f in ipairs(files) do
         assert.is_true(H.slurp(d .. "/plain/" .. f) == H.slurp(d .. "/chunked/" .. f), f .. " differs")
      end
   end)

   it("imports every capture of testdata that the reader accepts, packet for packet", function()
      local d, sh = new_root("64M")
      local n = 0
      for _, dir in ipairs({ "formats", "decap" }) do
         for _, f in ipairs(H.ls(H.testdata .. "/" .. dir)) do
            local path = H.testdata .. "/" .. dir .. "/" .. f
            local want, err = H.read(path)
            if want and not err and #want > 0 and f:match("pcap") then
               n = n + 1
               local out, rc = sh(("stream_capture --import %s --name t%d && stream_cat t%d > t%d.pcap"):format(path, n, n, n))
               assert.are.equal(0, rc, f .. ": " .. out)
               same_packets(want, H.read(("%s/t%d.pcap"):format(d, n)))
            end
         end
      end
      assert.is_true(n >= 45, "only " .. n .. " captures imported")
   end)

   it("expires the oldest capture when the ring wraps", function()
      local d, sh = new_root("256K --chunk-size 4K") -- 64 chunks
      gen(d, "a.pcap", "-p finance -n 600 -S 1")  -- about 30 chunks each
      for _, name in ipairs({ "a", "b", "c", "d" }) do
         local out, rc = sh("stream_capture --import a.pcap --name " .. name)
         assert.are.equal(0, rc, out)
      end
      local list = sh("stream_cat --list")
      assert.matches("\n1 +a .* yes\n", list)
      assert.matches("\n2 +b .* partly\n", list)
      assert.matches("\n3 +c .* no\n", list)
      assert.matches("\n4 +d .* no\n", list)
      local out, rc = sh("stream_cat a > a.out")
      assert.are.equal(1, rc)
      assert.matches("lost %d+ chunks %(600 packets", out)
      assert.are.equal(24, #H.slurp(d .. "/a.out"))
   end)

   it("syncs in the background without blocking the writer, and reports the result", function()
      local d = new_root("1M --chunk-size 4K")
      local dir = d .. "/mnt/store0/capture"
      local err = ffi.new("char[256]")
      local s = C.pc_store_open(dir, 1, err, 256)
      assert.is_not_nil(s, ffi.string(err))
      -- the first call starts one (nothing before it: 0); until it ends, 1
      assert.are.equal(0, C.pc_store_sync_async(s))
      local rc = 1
      for _ = 1, 200 do
         rc = C.pc_store_sync_async(s)
         if rc ~= 1 then break end
         C.pc_nap_ns(10e6)
      end
      assert.are.equal(0, rc, "the background sync did not finish in 2 s")
      -- a blocking sync waits for the one just started
      assert.are.equal(0, C.pc_store_sync(s))
      C.pc_store_close(s)
   end)

   it("tells a lapped reader exactly what it lost", function()
      local d, sh = new_root("256K --chunk-size 4K")
      gen(d, "x.pcap", "-p finance -n 2000 -S 3")
      sh("stream_capture --import x.pcap --name x")
      local dir = d .. "/mnt/store0/capture"
      local err = ffi.new("char[256]")
      local s = C.pc_store_open(dir, 0, err, 256)
      assert.is_not_nil(s, ffi.string(err))
      local idx = C.pc_open_read(dir .. "/captures/1.idx")
      local r = C.pc_store_reader_open(s, 1, 0, 0, idx)
      local pkts = ffi.new("pc_pkt[64]")
      local got = C.pc_store_next(r, pkts, 64) -- the reader is in chunk 0
      -- meanwhile the writer laps it
      sh("stream_capture --import x.pcap --name y")
      while true do
         local n = C.pc_store_next(r, pkts, 64)
         if n <= 0 then break end
         got = got + n
      end
      local st = ffi.new("pc_store_stats")
      C.pc_store_reader_stats(r, st)
      local info = ffi.new("pc_store_info")
      C.pc_store_info_get(s, info)
      assert.are.equal(1, C.pc_store_reader_ended(r))
      -- it resumed at the oldest chunk the writer could not be rewriting
      -- it resumed at head - nslots + 1, the oldest chunk the writer could
      -- not be rewriting, so chunks 1 .. head - nslots were lost
      assert.are.equal(tonumber(info.head - info.nslots), tonumber(st.lost_chunks))
      assert.is_true(st.lost_pkts > 0)
      assert.are.equal(2000, got + tonumber(st.lost_pkts))
      C.pc_store_reader_close(r)
      C.pc_close(idx)
      C.pc_store_close(s)
   end)

   it("loses nothing committed and reads no garbage after the writer is killed mid-chunk", function()
      local d, sh = new_root("64M")
      gen(d, "in.pcap", "-p isp -n 40000 -S 8")
      -- feed half, kill -9 while the writer holds a partial chunk
      local out = sh("mkfifo fifo && { stream_capture --import - --name k < fifo > w.log 2>&1 & pid=$!; exec 3>fifo; "
         .. "head -c 9000000 in.pcap >&3; sleep 1; kill -KILL $pid; wait $pid; echo killed=$?; exec 3>&-; }")
      assert.matches("killed=137", out)
      -- the next writer closes the capture and indexes what was committed
      local rc
      out, rc = sh("stream_capture --import in.pcap --name next")
      assert.are.equal(0, rc, out)
      assert.matches("capture k was left open", out)
      out, rc = sh("stream_cat k > k.pcap")
      assert.are.equal(0, rc, out)
      local got, want = H.read(d .. "/k.pcap"), H.read(d .. "/in.pcap")
      assert.is_true(#got > 10000, "only " .. #got .. " packets were committed")
      local prefix = {}
      for k = 1, #got do prefix[k] = want[k] end
      same_packets(prefix, got)
   end)

   it("a follower started before the writer receives every packet", function()
      local d, sh = new_root("64M")
      local input = gen(d, "in.pcap", "-p isp -n 20000 -S 9")
      local out = sh("{ timeout 60 stream_cat -f > f.pcap 2> f.log & pid=$!; sleep 0.5; "
         .. "stream_capture --import in.pcap --name live > /dev/null 2>&1; wait $pid; echo follower=$?; }")
      assert.matches("follower=0", out)
      assert.is_true(H.slurp(d .. "/f.pcap") == H.slurp(input), "the follower's output differs from the input")
   end)

   it("detects, reports and skips a corrupt chunk", function()
      local d, sh = new_root("1M --chunk-size 4K")
      gen(d, "in.pcap", "-p finance -n 1000 -S 5")
      sh("stream_capture --import in.pcap --name c")
      -- flip bytes inside chunk 3's records
      local ring = d .. "/mnt/store0/capture/ring.dat"
      local f = assert(io.open(ring, "r+b"))
      f:seek("set", 4096 + 3 * 4096 + 200)
      f:write("\255\255\255\255")
      f:close()
      local out, rc = sh("stream_cat c > c.pcap")
      assert.are.equal(1, rc)
      assert.matches("chunk 3 failed its checksum", out)
      local m = out:match("skipped 1 corrupt chunks %((%d+) packets%)")
      assert.is_not_nil(m, out)
      assert.are.equal(1000 - tonumber(m), #H.read(d .. "/c.pcap"))
   end)

   it("stream_cat filters with --bpf, windows with --epoch-*/--time-*, and has -v, --info, --no-pcap-header", function()
      local d, sh = new_root("64M")
      gen(d, "in.pcap", "-p finance -n 20000 -s 10 -S 11")
      sh("stream_capture --import in.pcap --name f")
      -- --bpf equals tcpdump's filter on the same (plain) traffic
      local out, rc = sh("stream_cat --bpf 'udp and dst port 10003' f > bpf.pcap && "
         .. "tcpdump --time-stamp-precision=nano -r in.pcap -w want.pcap 'udp and dst port 10003' 2>/dev/null")
      assert.are.equal(0, rc, out)
      assert.is_true(H.slurp(d .. "/bpf.pcap") == H.slurp(d .. "/want.pcap"), "--bpf differs from tcpdump")
      out, rc = sh("stream_cat --bpf 'tcp port 70000' f")
      assert.are.equal(2, rc)
      assert.matches("%-%-bpf", out)
      -- epoch window: 22:13:22 to 22:13:25 (T0 = 22:13:20)
      local all = H.read(d .. "/in.pcap")
      local lo, hi = "1700000002000000000", "1700000005000000000"
      local want = {}
      for _, p in ipairs(all) do
         if #p.ts == #lo and p.ts >= lo and p.ts <= hi then want[#want + 1] = p end
      end
      sh(("stream_cat --epoch-start %s --epoch-stop %s f > win.pcap"):format(lo, hi))
      local got = H.read(d .. "/win.pcap")
      assert.are.equal(#want, #got)
      assert.are.equal(want[1].ts, got[1].ts)
      assert.are.equal(want[#want].ts, got[#got].ts)
      -- the same window in local time (TZ=UTC here)
      sh("stream_cat --time-start 22:13:22 --time-stop 22:13:25 f > tw.pcap")
      assert.is_true(H.slurp(d .. "/tw.pcap") == H.slurp(d .. "/win.pcap"), "--time-* differs from --epoch-*")
      -- no header: the same records
      sh("stream_cat --no-pcap-header f > raw")
      assert.is_true(H.slurp(d .. "/raw") == H.slurp(d .. "/in.pcap"):sub(25))
      out = sh("stream_cat --info f")
      assert.matches("packets 20000", out)
      assert.matches("expired no", out)
      out = sh("stream_cat -v f > /dev/null")
      assert.matches("chunks, 20000 packets read, 20000 written", out)
   end)

   it("refuses bad usage with a message", function()
      local _, sh = new_root("1M")
      local out, rc = sh("stream_cat nosuch")
      assert.are.equal(1, rc)
      assert.matches("no capture named 'nosuch'", out)
      out, rc = sh("stream_cat --bogus")
      assert.are.equal(2, rc)
      out, rc = sh("stream_capture --import")
      assert.are.equal(2, rc)
      assert.matches("needs at least one file", out)
      out, rc = sh("stream_capture --import x.pcap --name 'a/b'")
      assert.are.equal(2, rc)
      out, rc = sh("stream_capture --create-store 1M")
      assert.are.equal(1, rc)
      assert.matches("already exists", out)
      out, rc = sh("stream_cat --help && stream_capture --help")
      assert.are.equal(0, rc)
   end)
end)
