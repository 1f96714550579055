-- pc_store_ahead: the store reader that reads, checks and filters chunks in
-- threads.  It must give exactly what the synchronous reader (pc_store_next
-- plus decap and BPF on the caller's side) gives: the same packets, the
-- same counts of lapped and corrupt chunks, the same position.
local H = require("spec.helper")
local ffi = require("ffi")
local C = require("pushcap.ffi")
local store = require("pushcap.store")

local function new_store(size, chunk)
   local d = H.tmpdir()
   local dir = d .. "/mnt/store0/capture"
   assert(store.create(dir, size, chunk))
   return d, dir
end

local function import(d, dir, name, gen_args)
   local out, rc = H.sh(("%s/pcapgen %s -o %s/%s.pcap"):format(H.build, gen_args, d, name))
   assert.are.equal(0, rc, out)
   out, rc = H.sh(("cd %s && PUSHCAP_ROOT=%s PATH=%s:%s:$PATH stream_capture --import %s.pcap --name %s")
      :format(d, d, H.build, H.bin, name, name))
   assert.are.equal(0, rc, out)
end

local function pkt_of(p, chunk)
   return { ts = tostring(p.ts), data = ffi.string(p.data, p.caplen), wire = p.wirelen, port = p.port,
            fcs = bit.band(p.flags, 1), rec = p.rec, chunk = chunk }
end

-- Every packet from the synchronous reader, with the reader's stats.
local function read_sync(st, m, start)
   local rd = assert(st:reader(m, start))
   local pkts = ffi.new("pc_pkt[?]", 1024)
   local list = {}
   while true do
      local n = C.pc_store_next(rd.h, pkts, 1024)
      if n <= 0 then break end
      local chunk = tonumber(C.pc_store_reader_chunk(rd.h))
      for i = 0, n - 1 do list[#list + 1] = pkt_of(pkts[i], chunk) end
   end
   local sst = ffi.new("pc_store_stats")
   C.pc_store_reader_stats(rd.h, sst)
   return list, sst, tonumber(C.pc_store_reader_position(rd.h)), C.pc_store_reader_ended(rd.h)
end

-- The same through pc_store_ahead; also checks that each call is one chunk
-- and that each frame is a pcap record where it lies.
local function read_ahead(st, m, start, threads, filter, dstats)
   local rd = assert(st:reader(m, start))
   local a = C.pc_store_ahead_new(rd.h, threads, filter, dstats)
   assert.is_not_nil(a)
   local pp, kp = ffi.new("pc_pkt *[1]"), ffi.new("uint8_t *[1]")
   local list, chunks = {}, {}
   while true do
      local n = C.pc_store_ahead_next(a, pp, kp)
      if n <= 0 then break end
      local chunk = tonumber(C.pc_store_reader_chunk(rd.h))
      assert.is_nil(chunks[chunk], "chunk " .. chunk .. " came twice")
      chunks[chunk] = true
      for i = 0, n - 1 do
         local p = pp[0][i]
         local e = pkt_of(p, chunk)
         e.keep = kp[0] == nil or kp[0][i] ~= 0
         if p.wirelen > 0 and bit.band(p.flags, C.PC_PKT_RAW) ~= 0 then
            local h = ffi.cast("const uint32_t *", p.data - 16)
            assert.are.equal(tonumber(p.ts / 1000000000ULL), h[0])
            assert.are.equal(tonumber(p.ts % 1000000000ULL), h[1])
            assert.are.same({ p.caplen, p.wirelen }, { h[2], h[3] })
         end
         list[#list + 1] = e
      end
   end
   C.pc_store_ahead_free(a)
   local sst = ffi.new("pc_store_stats")
   C.pc_store_reader_stats(rd.h, sst)
   return list, sst, tonumber(C.pc_store_reader_position(rd.h)), C.pc_store_reader_ended(rd.h)
end

local function same(want, got)
   assert.are.equal(#want, #got, "packet counts differ")
   for k = 1, #want do
      local a, b = want[k], got[k]
      if a.ts ~= b.ts or a.data ~= b.data or a.wire ~= b.wire or a.port ~= b.port or a.fcs ~= b.fcs
         or a.rec ~= b.rec or a.chunk ~= b.chunk then
         error(("packet %d differs: ts %s/%s rec %d/%d chunk %d/%d len %d/%d"):format(k, a.ts, b.ts, a.rec, b.rec,
            a.chunk, b.chunk, #a.data, #b.data))
      end
   end
end

local function same_stats(a, b)
   for _, f in ipairs({ "packets", "bytes_wire", "bytes_cap", "chunks", "lost_chunks", "lost_pkts", "corrupt_chunks",
                        "corrupt_pkts" }) do
      assert.are.equal(tonumber(a[f]), tonumber(b[f]), f)
   end
end

describe("store read-ahead", function()
   after_each(H.cleanup)

   it("gives what pc_store_next gives, a chunk per call, with 1, 2 and 4 threads, and stops at the next capture", function()
      local d, dir = new_store(8 * 1024 * 1024, 16384)
      import(d, dir, "a", "-p isp -n 6000 -S 3")
      import(d, dir, "b", "-p finance -n 3000 -S 4")
      local st = assert(store.open(dir))
      for _, name in ipairs({ "a", "b" }) do
         local m = assert(st:find(name))
         for _, start in ipairs({ "begin", { chunk = m.first_chunk + 2, rec = 5 } }) do
            local want, wst, wpos, wend = read_sync(st, m, start)
            assert.is_true(#want > 1000)
            for _, threads in ipairs({ 1, 2, 4 }) do
               local got, gst, gpos, gend = read_ahead(st, m, start, threads)
               same(want, got)
               same_stats(wst, gst)
               assert.are.equal(wpos, gpos)
               assert.are.same({ 1, 1 }, { wend, gend })
            end
         end
      end
   end)

   it("decapsulates and filters as the caller would, and leaves the frames as they were", function()
      local d, dir = new_store(8 * 1024 * 1024, 16384)
      import(d, dir, "a", "-p isp -n 8000 -S 5")
      local st = assert(store.open(dir))
      local m = assert(st:find("a"))
      local want = read_sync(st, m, "begin")
      local ebuf = ffi.new("char[256]")
      local bpf = C.pc_bpf_compile("net 192.168.1.0/24 and tcp", 1, ebuf, 256)
      assert.is_not_nil(bpf, ffi.string(ebuf))
      -- the oracle: the copying decap, libpcap's verdicts through pc_bpf_match
      local kept_want, inner_want = {}, {}
      local wst = ffi.new("pc_decap_stats")
      local arr = ffi.new("pc_pkt[?]", #want)
      local bufs = {}
      for k, p in ipairs(want) do
         bufs[k] = ffi.new("uint8_t[?]", #p.data)
         ffi.copy(bufs[k], p.data, #p.data)
         arr[k - 1].data, arr[k - 1].caplen, arr[k - 1].wirelen = bufs[k], #p.data, p.wire
      end
      local inner = ffi.new("pc_pkt[?]", #want)
      local keep = ffi.new("uint8_t[?]", #want)
      local scratch = ffi.new("uint8_t[?]", 64 * 1024 * 1024)
      assert.are.equal(#want, C.pc_decap(arr, inner, #want, scratch, 64 * 1024 * 1024, wst))
      C.pc_bpf_match(bpf, inner, #want, keep)
      for k = 1, #want do
         kept_want[k] = keep[k - 1] ~= 0
         inner_want[k] = ffi.string(inner[k - 1].data, inner[k - 1].caplen)
      end
      local nkept = 0
      for k = 1, #want do if kept_want[k] then nkept = nkept + 1 end end
      assert.is_true(nkept > 100 and nkept < #want - 100, "the filter must keep some and drop some: " .. nkept)

      local f = ffi.new("pc_filter", { bpf = bpf, decap = C.PC_DECAP_PEEK })
      for _, threads in ipairs({ 1, 2 }) do
         local gst = ffi.new("pc_decap_stats")
         local got = read_ahead(st, m, "begin", threads, f, gst)
         assert.are.equal(#want, #got)
         for k = 1, #want do
            assert.are.equal(kept_want[k], got[k].keep, "keep of packet " .. k)
            assert.are.same({ want[k].ts, want[k].rec, want[k].chunk }, { got[k].ts, got[k].rec, got[k].chunk })
            assert.is_true(want[k].data == got[k].data, "frame of packet " .. k .. " was written")
         end
         assert.are.equal(tonumber(wst.packets), tonumber(gst.packets))
         assert.are.equal(tonumber(wst.decapped), tonumber(gst.decapped))
         assert.are.equal(tonumber(wst.gre), tonumber(gst.gre))
      end
      -- Output "decap": the inner frames are what comes back
      f.decap = C.PC_DECAP_OUT
      local got = read_ahead(st, m, "begin", 2, f, ffi.new("pc_decap_stats"))
      assert.are.equal(#want, #got)
      for k = 1, #want do
         assert.are.equal(inner_want[k], got[k].data, "inner frame of packet " .. k)
         assert.are.equal(kept_want[k], got[k].keep)
      end
      -- filters that read across the rewritten header's end (a 4-byte load
      -- at 12, bytes at 13 and 14), the wire length, indirect loads
      for _, expr in ipairs({ "ether[12:4] & 0xffff0000 = 0x08000000", "ether[11:4] != 0 and ether[13:2] = 0x0045",
                              "len > 600 and ip[0] & 0xf = 5", "tcp[13] & 0x10 != 0 and tcp[0:2] > 1024 or udp[2:2] < 1024" }) do
         local x = assert(C.pc_bpf_compile(expr, 1, ebuf, 256))
         local k2 = ffi.new("uint8_t[?]", #want)
         local hits = C.pc_bpf_match(x, inner, #want, k2)
         assert.is_true(hits > 0 and hits < #want, expr .. " keeps " .. hits)
         local g = read_ahead(st, m, "begin", 2, ffi.new("pc_filter", { bpf = x, decap = C.PC_DECAP_PEEK }), nil)
         for k = 1, #want do assert.are.equal(k2[k - 1] ~= 0, g[k].keep, expr .. ": packet " .. k) end
         C.pc_bpf_free(x)
      end
      -- decap alone, for Output "decap" without a filter: nothing to drop
      local nf = ffi.new("pc_filter", { decap = C.PC_DECAP_OUT })
      got = read_ahead(st, m, "begin", 2, nf, ffi.new("pc_decap_stats"))
      for k = 1, #want do
         assert.are.equal(inner_want[k], got[k].data)
         assert.is_true(got[k].keep)
      end
      C.pc_bpf_free(bpf)
   end)

   it("applies FilterFrame's port and FCS table", function()
      local d, dir = new_store(1024 * 1024, 4096)
      local st = assert(store.open(dir, true))
      local m = assert(st:begin_capture("ports"))
      local frames = {}
      for i = 1, 400 do
         frames[i] = { data = H.frame(60 + i % 50, i), port = i % 4, flags = i % 3 == 0 and 1 or 0, tsn = H.t(i * 1000) }
      end
      local b = H.batch(frames)
      assert.are.equal(400, C.pc_store_put(st.h, b.arr, b.n))
      assert(st:end_capture())
      local ok = ffi.new("uint8_t[512]")
      ok[2 * 2] = 1      -- port 2, good FCS
      ok[3 * 2 + 1] = 1  -- port 3, bad FCS
      local f = ffi.new("pc_filter", { frame_ok = ok })
      local got = read_ahead(st, m, "begin", 2, f, nil)
      assert.are.equal(400, #got)
      for k, p in ipairs(got) do
         local want = (frames[k].port == 2 and frames[k].flags == 0) or (frames[k].port == 3 and frames[k].flags == 1)
         assert.are.equal(want, p.keep, "packet " .. k)
      end
   end)

   -- without a filter chunks are copied out with pread; with one they are
   -- read where they lie in the mapped ring, and a chunk the writer came
   -- back to meanwhile must count as lost, never as data
   for _, filtered in ipairs({ false, true }) do
      it(("counts what a lapped reader lost, with everything else delivered (%s)")
         :format(filtered and "filtered, mapped" or "copied"), function()
         local d, dir = new_store(256 * 1024, 4096)
         import(d, dir, "x", "-p finance -n 2000 -S 3")
         local st = assert(store.open(dir))
         local m = assert(st:find("x"))
         local rd = assert(st:reader(m, "begin"))
         local ebuf = ffi.new("char[256]")
         local bpf = filtered and assert(C.pc_bpf_compile("len > 0", 1, ebuf, 256))
         local f = filtered and ffi.new("pc_filter", { bpf = bpf }) or nil
         local a = C.pc_store_ahead_new(rd.h, 2, f, nil)
         local pp, kp = ffi.new("pc_pkt *[1]"), ffi.new("uint8_t *[1]")
         local got = 0
         local function take(n)
            for i = 0, n - 1 do
               local p = pp[0][i]
               if p.wirelen > 0 and (kp[0] == nil or kp[0][i] ~= 0) then
                  got = got + 1
                  -- what is handed over is whole: a finance frame is UDP to 10001..
                  assert.is_true(p.caplen >= 42 and p.data[12] == 8 and p.data[13] == 0, "torn frame")
               end
            end
         end
         take(C.pc_store_ahead_next(a, pp, kp))
         -- meanwhile the writer laps it
         import(d, dir, "y", "-p finance -n 2000 -S 3")
         while true do
            local n = C.pc_store_ahead_next(a, pp, kp)
            if n <= 0 then break end
            take(n)
         end
         C.pc_store_ahead_free(a)
         local sst = ffi.new("pc_store_stats")
         C.pc_store_reader_stats(rd.h, sst)
         assert.are.equal(1, C.pc_store_reader_ended(rd.h))
         assert.is_true(sst.lost_chunks > 0)
         assert.are.equal(2000, got + tonumber(sst.lost_pkts))
         if bpf then C.pc_bpf_free(bpf) end
      end)
   end

   it("reports a ring it cannot read (SIGBUS under the mapping) as a read error, not a crash", function()
      local d, dir = new_store(1024 * 1024, 4096)
      import(d, dir, "c", "-p finance -n 1000 -S 5")
      local st = assert(store.open(dir))
      local m = assert(st:find("c"))
      local rd = assert(st:reader(m, "begin"))
      local ebuf = ffi.new("char[256]")
      local bpf = assert(C.pc_bpf_compile("udp", 1, ebuf, 256))
      local f = ffi.new("pc_filter", { bpf = bpf })
      local a = C.pc_store_ahead_new(rd.h, 2, f, nil)
      local pp, kp = ffi.new("pc_pkt *[1]"), ffi.new("uint8_t *[1]")
      -- the ring file loses everything after chunk 5 (pages past the end of
      -- a mapped file raise SIGBUS)
      local out, rc = H.sh(("truncate -s %d %s/ring.dat"):format(4096 + 6 * 4096, dir))
      assert.are.equal(0, rc, out)
      local chunks, n = 0, 0
      repeat
         n = C.pc_store_ahead_next(a, pp, kp)
         if n > 0 then chunks = chunks + 1 end
      until n <= 0
      assert.is_true(n < 0, "the end of the ring must be an error")
      -- (the threads may have read a few chunks before the cut)
      local bad = ffi.string(C.pc_store_reader_error(rd.h))
      local at = tonumber(bad:match("^reading chunk (%d+): Input/output error$"))
      assert.is_not_nil(at, bad)
      assert.is_true(at >= 6 and chunks == at, ("error at chunk %d after %d chunks"):format(at, chunks))
      C.pc_store_ahead_free(a)
      C.pc_bpf_free(bpf)
   end)

   it("counts and skips a corrupt chunk as the synchronous reader does", function()
      local d, dir = new_store(1024 * 1024, 4096)
      import(d, dir, "c", "-p finance -n 1000 -S 5")
      local f = assert(io.open(dir .. "/ring.dat", "r+b"))
      f:seek("set", 4096 + 3 * 4096 + 200)
      f:write("\255\255\255\255")
      f:close()
      local st = assert(store.open(dir))
      local m = assert(st:find("c"))
      local want, wst = read_sync(st, m, "begin")
      local got, gst = read_ahead(st, m, "begin", 2)
      same(want, got)
      same_stats(wst, gst)
      assert.are.equal(1, tonumber(gst.corrupt_chunks))
      local rd = assert(st:reader(m, "begin"))
      local a = C.pc_store_ahead_new(rd.h, 2, nil, nil)
      local pp, kp = ffi.new("pc_pkt *[1]"), ffi.new("uint8_t *[1]")
      while C.pc_store_ahead_next(a, pp, kp) > 0 do end
      C.pc_store_ahead_free(a)
      assert.matches("chunk 3 failed its checksum", ffi.string(C.pc_store_reader_error(rd.h)))
   end)

   it("follows a capture being written: nothing yet, then the new chunks, then its end", function()
      local d, dir = new_store(1024 * 1024, 4096)
      local w = assert(store.open(dir, true))
      local m = assert(w:begin_capture("live"))
      local function put(from, to)
         local frames = {}
         for i = from, to do frames[#frames + 1] = { data = H.frame(100, i), tsn = H.t(i * 1000) } end
         local b = H.batch(frames)
         assert.are.equal(b.n, C.pc_store_put(w.h, b.arr, b.n))
         assert.are.equal(0, C.pc_store_flush(w.h))
      end
      local st = assert(store.open(dir))
      local rd = assert(st:reader(m, "begin"))
      local a = C.pc_store_ahead_new(rd.h, 2, nil, nil)
      local pp, kp = ffi.new("pc_pkt *[1]"), ffi.new("uint8_t *[1]")
      local function drain()
         local ts = {}
         while true do
            local n = C.pc_store_ahead_next(a, pp, kp)
            assert.is_true(n >= 0)
            if n == 0 then return ts end
            for i = 0, n - 1 do ts[#ts + 1] = pp[0][i].ts end
         end
      end
      assert.are.equal(0, #drain())
      assert.are.equal(0, C.pc_store_reader_ended(rd.h))
      put(1, 100)
      local got = drain()
      assert.are.equal(100, #got)
      assert.are.equal(0, C.pc_store_reader_ended(rd.h))
      put(101, 250)
      got = drain()
      assert.are.equal(150, #got)
      assert.are.equal(H.t(101 * 1000), got[1])
      -- the threads catch up and find nothing more while the consumer is
      -- still behind; what is committed before it gets there is delivered
      -- before any "nothing yet" (an idle tick must not overtake it)
      put(251, 300)
      local first = C.pc_store_ahead_next(a, pp, kp) -- the workers go on to find nothing more
      assert.is_true(first > 0)
      C.pc_sleep_ns(300e6)
      put(301, 400)
      got = drain()
      assert.are.equal(150, first + #got)
      assert(w:end_capture())
      assert.are.equal(0, #drain())
      assert.are.equal(1, C.pc_store_reader_ended(rd.h))
      C.pc_store_ahead_free(a)
   end)
end)
