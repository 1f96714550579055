-- runtime/bpf.c: libpcap's compiler and interpreter over pc_pkt batches,
-- checked against every verified row of libpcap's own filter tests
-- (testdata/filter/filter-cases.tsv) read through our reader.
local ffi = require("ffi")
local H = require("spec.helper")
local C = require("pushcap.ffi")

local dir = H.testdata .. "/filter/"

local fields, batch = H.fields, H.batch

local function compile(expr, linktype)
   local err = ffi.new("char[512]")
   local f = C.pc_bpf_compile(expr, linktype, err, 512)
   if f == nil then return nil, ffi.string(err) end
   return ffi.gc(f, C.pc_bpf_free)
end

-- The 1-based numbers of the matching packets, as the TSV writes them.
local function match_list(f, b)
   local m = ffi.new("uint8_t[?]", math.max(b.n, 1))
   local count = C.pc_bpf_match(f, b.arr, b.n, m)
   local hits = {}
   for i = 0, b.n - 1 do
      if m[i] ~= 0 then hits[#hits + 1] = tostring(i + 1) end
   end
   assert.are.equal(#hits, count)
   return #hits > 0 and table.concat(hits, ",") or "-"
end

local function load_rows()
   local rows = {}
   for line in io.lines(dir .. "filter-cases.tsv") do
      local t = fields(line)
      if t[1] ~= "savefile" and #t >= 7 then
         rows[#rows + 1] = { file = t[1], expr = t[2], linktype = tonumber(t[3]:match("LINKTYPE (%d+)")),
                             packets = tonumber(t[4]), expect = t[5], count = tonumber(t[6]),
                             verified = tonumber(t[7]) }
      end
   end
   return rows
end

describe("bpf on libpcap's filter cases", function()
   local rows = load_rows()
   -- read each savefile once; a refused file keeps its error so its rows
   -- still get a test saying so
   local files = {}
   for _, r in ipairs(rows) do
      if not files[r.file] then
         local pkts, err = H.read(dir .. r.file)
         files[r.file] = { pkts = pkts, err = err, batch = pkts and batch(pkts) }
      end
   end

   it("has all 134 verified rows, each with a LINKTYPE", function()
      assert.are.equal(134, #rows)
      for _, r in ipairs(rows) do
         assert.is_number(r.linktype, r.file)
         assert.are.equal(r.count, r.verified, r.file .. " " .. r.expr)
      end
   end)

   -- our interpreter against libpcap's own bpf_filter, through ffi: every
   -- row's program on its packets, each also cut short at every length
   -- (every bounds check), with the wire length as given
   it("gives libpcap's bpf_filter verdict on every row's packets cut at every length", function()
      ffi.cdef([[
         typedef struct pcap pcap_ref_t;
         struct bpf_insn_ref { uint16_t code; uint8_t jt, jf; uint32_t k; };
         struct bpf_program_ref { unsigned int bf_len; struct bpf_insn_ref *bf_insns; };
         pcap_ref_t *pcap_open_dead(int linktype, int snaplen);
         int pcap_compile(pcap_ref_t *p, struct bpf_program_ref *fp, const char *str, int optimize, uint32_t netmask);
         unsigned int bpf_filter(const struct bpf_insn_ref *pc, const unsigned char *pkt, unsigned int wirelen,
                                 unsigned int buflen);
         void pcap_freecode(struct bpf_program_ref *fp);
         void pcap_close(pcap_ref_t *p);
      ]])
      local pcap = ffi.load("pcap")
      local compared, differs = 0, 0
      local one = ffi.new("pc_pkt[1]")
      local m = ffi.new("uint8_t[1]")
      for _, r in ipairs(rows) do
         local file = files[r.file]
         -- LINKTYPE and DLT agree below 100; DLT_RAW is 12 on Linux
         local dlt = r.linktype == 101 and 12 or r.linktype < 100 and r.linktype
         if file.pkts and dlt then
            local f = assert(compile(r.expr, r.linktype))
            local h = pcap.pcap_open_dead(dlt, 262144)
            local prog = ffi.new("struct bpf_program_ref")
            assert.are.equal(0, pcap.pcap_compile(h, prog, r.expr, 1, 0), r.expr)
            for i = 0, file.batch.n - 1 do
               local p = file.batch.arr[i]
               for len = p.caplen, 0, -1 do
                  one[0] = p
                  one[0].caplen = len
                  C.pc_bpf_match(f, one, 1, m)
                  local want = pcap.bpf_filter(prog.bf_insns, p.data, p.wirelen, len) ~= 0
                  if want ~= (m[0] ~= 0) then
                     differs = differs + 1
                     print(("differs: %s %q packet %d cut to %d: libpcap %s"):format(r.file, r.expr, i + 1, len,
                        tostring(want)))
                  end
                  compared = compared + 1
               end
            end
            pcap.pcap_freecode(prog)
            pcap.pcap_close(h)
         end
      end
      assert.are.equal(0, differs)
      assert.is_true(compared > 50000, "compared " .. compared)
   end)

   for k, r in ipairs(rows) do
      local file = files[r.file]
      if file.pkts == nil then
         it(("row %d: %s is refused by our reader, so %q cannot run"):format(k, r.file, r.expr), function()
            assert.is_nil(file.pkts)
            assert.is_string(file.err)
         end)
      else
         it(("row %d: %s %q"):format(k, r.file, r.expr), function()
            assert.is_nil(file.err)
            assert.are.equal(r.packets, file.batch.n)
            local f, err = compile(r.expr, r.linktype)
            assert.is_not_nil(f, err)
            assert.are.equal(r.expect, match_list(f, file.batch))
         end)
      end
   end
end)

describe("bpf", function()
   local function pkt(len, wire, tag)
      return { data = H.frame(len, tag), caplen = len, wire = wire or len, port = 0, flags = 0 }
   end

   it("returns nil and libpcap's message for an expression that does not compile", function()
      local f, err = compile("tcp port 99999", 1)
      assert.is_nil(f)
      assert.are.equal("illegal port number 99999 > 65535", err)
      f, err = compile("ip and", 1)
      assert.is_nil(f)
      assert.matches("syntax error", err)
      -- valid syntax, but not for this linktype
      f, err = compile("radio[2] == 1", 1)
      assert.is_nil(f)
      assert.matches("radio information not present", err)
   end)

   it("matches everything with an empty or missing expression, without looking at the bytes", function()
      local b = batch({ pkt(60), pkt(1), pkt(14, 1500) })
      assert.are.equal("1,2,3", match_list(assert(compile("", 1)), b))
      assert.are.equal("1,2,3", match_list(assert(compile(nil, 1)), b))
      -- even for a linktype libpcap does not know
      assert.is_not_nil(compile("", 99999))
   end)

   it("lets NOP ticks through any filter", function()
      local b = batch({ pkt(60), pkt(60) })
      b.arr[1].wirelen, b.arr[1].caplen, b.arr[1].data = 0, 0, nil
      local f = assert(compile("tcp", 1))   -- H.frame is IPv4 with no TCP
      assert.are.equal("2", match_list(f, b))
   end)

   it("gives the filter the wire length, not the captured length", function()
      local b = batch({ pkt(60, 1500), pkt(60, 60) })
      assert.are.equal("1", match_list(assert(compile("greater 1000", 1)), b))
      assert.are.equal("2", match_list(assert(compile("less 100", 1)), b))
   end)

   it("compiles for LINKTYPE_RAW (101), which libpcap knows as DLT_RAW", function()
      local b = batch({ { data = "\x60" .. string.rep("\0", 39), caplen = 40, wire = 40, port = 0, flags = 0 } })
      assert.are.equal("1", match_list(assert(compile("ip6", 101)), b))
      assert.are.equal("-", match_list(assert(compile("ip", 101)), b))
   end)

   it("pc_pkt_select moves the kept packets to the front in order", function()
      local list = {}
      for i = 1, 7 do list[i] = pkt(60 + i) end
      local b = batch(list)
      local keep = ffi.new("uint8_t[7]", { 0, 1, 1, 0, 0, 1, 1 })
      assert.are.equal(4, C.pc_pkt_select(b.arr, 7, keep))
      local lens = {}
      for i = 0, 3 do lens[#lens + 1] = b.arr[i].caplen end
      assert.are.same({ 62, 63, 66, 67 }, lens)
      assert.are.equal(0, C.pc_pkt_select(b.arr, 4, ffi.new("uint8_t[4]")))
      assert.are.equal(3, C.pc_pkt_select(b.arr, 3, ffi.new("uint8_t[3]", { 1, 1, 1 })))
      assert.are.equal(62, b.arr[0].caplen)
   end)

   it("filters then selects a real capture the way the pipeline will", function()
      local pkts = assert(H.read(dir .. "isakmp4500.pcap"))
      local b = batch(pkts)
      local m = ffi.new("uint8_t[?]", b.n)
      local n = C.pc_bpf_match(assert(compile("arp", 1)), b.arr, b.n, m)
      assert.are.equal(n, C.pc_pkt_select(b.arr, b.n, m))
      for i = 0, n - 1 do
         assert.are.equal(0x08, b.arr[i].data[12])
         assert.are.equal(0x06, b.arr[i].data[13])
      end
   end)
end)
