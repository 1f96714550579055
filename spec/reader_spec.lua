-- The C reader against the third-party captures of testdata/formats (each
-- read or refused as its INDEX says) and against FMAD chunked streams.
local H = require("spec.helper")
local C = require("pushcap.ffi")

local formats = H.testdata .. "/formats/"

-- count of packets, or the error the file must be refused with
local expect = {
   ["be.pcap"] = { n = 5, first = "3064714590000", fmt = C.PC_FMT_PCAP_US },
   ["dhcp.pcap"] = { n = 4, first = "1102274184317453000", fmt = C.PC_FMT_PCAP_US },
   ["dhcp-nanosecond.pcap"] = { n = 4, first = "1102274184317453000", fmt = C.PC_FMT_PCAP_NS },
   ["dhcp.pcapng"] = { n = 4, first = "1102274184317453000", fmt = C.PC_FMT_PCAPNG },
   ["dhcp-nanosecond.pcapng"] = { n = 4, first = "1102274184317453000", fmt = C.PC_FMT_PCAPNG },
   ["ikev2-decrypt-aes256ccm16.pcapng"] = { n = 4 },
   ["empty.pcap"] = { n = 0 },
   ["icmp.pcapng.gz"] = { open_err = "gzip%-compressed" },
   ["linktype-reserved-field-not-zero.pcap"] = { open_err = "reserved bits" },
   ["malformed.pcap"] = { open_err = "unknown file format" },
   -- libpcap refuses mixed-linktype sections; one pcap output cannot hold them
   ["many_interfaces.pcapng.1"] = { n = 0, err = "linktype 0 but interface 0 has 1" },
   ["many_interfaces.pcapng.2"] = { n = 0, err = "linktype 0 but interface 0 has 1" },
   ["pcap-invalid-version-1.pcap"] = { open_err = "version 1.4" },
   ["pcap-invalid-version-2.pcap"] = { open_err = "version 2.5" },
   ["pcapng-invalid-vers-1.pcapng"] = { open_err = "version 0.1" },
   ["pcapng-invalid-vers-2.pcapng"] = { open_err = "version 1.1" },
   ["shb-option-too-long.pcapng"] = { open_err = "trailer" },
   ["truncated-mid-block.pcapng"] = { n = 2, err = "truncated input: pcapng block at byte offset 784" },
   ["truncated-mid-record-header.pcap"] = { n = 2, err = "truncated input: pcap record header at byte offset 712" },
   ["truncated-mid-record.pcap"] = { n = 2, err = "truncated input: pcap record at byte offset 712" },
}

describe("reader on testdata/formats", function()
   it("has an expectation for every file in the INDEX", function()
      local listed = 0
      for line in io.lines(formats .. "INDEX.tsv") do
         local file = line:match("^([^\t]+)\t")
         if file and file ~= "file" then
            listed = listed + 1
            assert.is_not_nil(expect[file], file .. " has no expectation")
         end
      end
      assert.are.equal(20, listed)
   end)

   for file, e in pairs(expect) do
      it(file, function()
         local pkts, err, fmt = H.read(formats .. file)
         if e.open_err then
            assert.is_nil(pkts)
            assert.matches(e.open_err, err)
            return
         end
         assert.is_not_nil(pkts, err)
         assert.are.equal(e.n, #pkts)
         if e.err then assert.matches(e.err, err, 1, true) else assert.is_nil(err) end
         if e.first then assert.are.equal(e.first, pkts[1].ts) end
         if e.fmt then assert.are.equal(e.fmt, fmt) end
      end)
   end

   it("reads big-endian microsecond and nanosecond pcap to the same packets", function()
      local d = H.tmpdir()
      local list = { { ts = "1700000000123456000", len = 60 }, { ts = "1700000001000001000", len = 1514 } }
      H.write_pcap(d .. "/be.pcap", list, { be = true, us = true })
      H.write_pcap(d .. "/ns.pcap", list)
      local a, b = H.read(d .. "/be.pcap"), H.read(d .. "/ns.pcap")
      assert.are.same(b, a)
      assert.are.equal("1700000001000001000", a[2].ts)
      assert.are.equal(1514, a[2].caplen)
   end)

   it("refuses a caplen over 256 KiB, naming the offset, after the good records", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/big.pcap", { { ts = 1e18, len = 100 }, { ts = 1e18, len = 262145 } })
      local pkts, err = H.read(d .. "/big.pcap")
      assert.are.equal(1, #pkts)
      assert.matches("record at byte offset 140 has caplen 262145, over the 262144 limit", err, 1, true)
   end)
end)

describe("reader on FMAD chunked streams", function()
   it("reads records, skips keep-alives and returns NOP ticks with wire length 0", function()
      local d = H.tmpdir()
      H.write_fmad(d .. "/c.fmad", {
         { { ts = "1700000000000000001", len = 64 }, { ts = "1700000000000000002", len = 128, port = 3, flag = 1 } },
         {},
         { { ts = "1700000001000000000", len = 0, wire = 0 } },
         { { ts = "1700000002000000000", len = 90 } },
      })
      local pkts, err, fmt = H.read(d .. "/c.fmad")
      assert.is_nil(err)
      assert.are.equal(C.PC_FMT_FMAD_CHUNKED, fmt)
      assert.are.equal(4, #pkts)
      assert.are.equal(3, pkts[2].port)
      assert.are.equal(1, pkts[2].flags)
      assert.are.equal(0, pkts[3].wire)
      assert.are.equal("1700000002000000000", pkts[4].ts)
   end)

   it("reports a truncated chunk with its offset and keeps what came before", function()
      local d = H.tmpdir()
      H.write_fmad(d .. "/c.fmad", { { { ts = 1, len = 64 } }, { { ts = 2, len = 64 }, { ts = 3, len = 64 } } })
      local whole = H.slurp(d .. "/c.fmad")
      local f = io.open(d .. "/cut.fmad", "wb")
      f:write(whole:sub(1, #whole - 10))
      f:close()
      local pkts, err = H.read(d .. "/cut.fmad")
      assert.are.equal(2, #pkts)
      assert.matches("truncated input: FMAD packet at byte offset 280", err, 1, true)
   end)

   it("refuses a chunk longer than 1 MiB", function()
      local d = H.tmpdir()
      local f = io.open(d .. "/bad.fmad", "wb")
      f:write(H.u32(0x1337bab3), string.rep("\0", 20))
      f:write(H.u16(1), H.u16(0), H.u32(0), H.u32(0), H.u32(2 ^ 20), string.rep("\0", 32))
      f:close()
      local pkts, err = H.read(d .. "/bad.fmad")
      assert.are.equal(0, #pkts)
      assert.matches("FMAD chunk at byte offset 24 has length 1048576, over the 1 MiB limit", err, 1, true)
   end)

   after_each(H.cleanup)
end)
