-- The split algorithm (fmadio-behaviour.md 3.3-3.5) through the real
-- pcap_split command on inputs with exact timestamps.
local H = require("spec.helper")
local num = require("pushcap.num")

local S = 1000000000 -- ns per second

-- T0 = 2023-11-14 22:13:20 UTC; ts(s) is T0 + s seconds as a string
local function ts(sec) return num.str(H.T0 + num.i64(sec * S)) end
local function tsn(sec, ns) return num.str(H.T0 + num.i64(sec) * S + num.i64(ns)) end

local function run(dir, args, input, tz)
   return H.sh(("cd %s && TZ=%s %s pcap_split %s -i %s"):format(dir, tz or "UTC", H.env, args, input))
end

-- { [file] = { ts, ts, ... } } for every file in dir
local function contents(dir)
   local t = {}
   for _, f in ipairs(H.ls(dir)) do
      if f:match("^o_") then
         local pkts = assert(H.read(dir .. "/" .. f))
         local list = {}
         for _, p in ipairs(pkts) do list[#list + 1] = p.ts end
         t[f] = list
      end
   end
   return t
end

describe("time split", function()
   after_each(H.cleanup)

   it("keeps a packet exactly on the next boundary in the old file", function()
      local d = H.tmpdir()
      -- boundary of the first file is 22:13:00; 22:14:00 is dTS == T
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(40) }, { ts = tsn(40, 1) } })
      local out, rc = run(d, "-o o_ --split-time 60e9", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231114_221300.pcap"] = { ts(0), ts(40) },
                        ["o_20231114_221400.pcap"] = { tsn(40, 1) } }, contents(d))
   end)

   it("names a first packet in the last quarter of a period after the next boundary", function()
      local d = H.tmpdir()
      -- 22:14:50 + 15 s roundup -> boundary 22:15:00; that file runs to 22:16:00
      H.write_pcap(d .. "/in.pcap", { { ts = ts(90) }, { ts = ts(160) }, { ts = ts(161) } })
      local out, rc = run(d, "-o o_ --split-time 60e9", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231114_221500.pcap"] = { ts(90), ts(160) },
                        ["o_20231114_221600.pcap"] = { ts(161) } }, contents(d))
   end)

   it("makes no files for idle gaps", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(410) }, { ts = ts(411) } })
      local out, rc = run(d, "-o o_ --split-time 60e9", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231114_221300.pcap"] = { ts(0) },
                        ["o_20231114_222000.pcap"] = { ts(410), ts(411) } }, contents(d))
   end)

   it("splits on a backward jump larger than the split time, not on a smaller one", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(410) }, { ts = ts(380) }, { ts = ts(10) } })
      local out, rc = run(d, "-o o_ --split-time 60e9", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231114_222000.pcap"] = { ts(410), ts(380) },
                        ["o_20231114_221300.pcap"] = { ts(10) } }, contents(d))
   end)

   it("uses --split-time-roundup for the boundary", function()
      local d = H.tmpdir()
      -- with no slack a first packet at 22:14:50 opens 22:14:00
      H.write_pcap(d .. "/in.pcap", { { ts = ts(90) } })
      local out, rc = run(d, "-o o_ --split-time 60e9 --split-time-roundup 0", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231114_221400.pcap"] = { ts(90) } }, contents(d))
   end)

   it("lets NOP ticks of a chunked stream close a split and open the next", function()
      local d = H.tmpdir()
      H.write_fmad(d .. "/in.fmad", {
         { { ts = ts(0) } },
         {},
         { { ts = ts(70), len = 0, wire = 0 } },  -- tick at 22:14:30: closes 221300
      })
      local out, rc = run(d, "-o o_ --split-time 60e9", "in.fmad")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231114_221300.pcap"] = { ts(0) }, ["o_20231114_221400.pcap"] = {} }, contents(d))
      assert.are.equal(24, #H.slurp(d .. "/o_20231114_221400.pcap"))
      assert.matches("FMAD Format Chunked", out)
   end)

   it("aligns to UTC epoch, naming files in local time (1 h splits change at hh:30 in +05:30)", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(3600) } })
      local out, rc = run(d, "-o o_ --split-time 3600e9", "in.pcap", "Asia/Kolkata")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231115_033000.pcap"] = { ts(0) }, ["o_20231115_043000.pcap"] = { ts(3600) } },
         contents(d))
   end)

   it("--roll-period holds splits after the roll time in the last file", function()
      local d = H.tmpdir()
      -- first packet 22:13:20; with a 1 h roll the guard starts at 23:00:00 local
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(2770) }, { ts = ts(2830) }, { ts = ts(2920) } })
      local out, rc = run(d, "-o o_ --split-time 60e9 --roll-period 3600e9", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ ["o_20231114_221300.pcap"] = { ts(0) },
                        ["o_20231114_225900.pcap"] = { ts(2770), ts(2830), ts(2920) } }, contents(d))
      assert.matches("Disable splitter: 2 records", out)
   end)
end)

describe("byte split", function()
   after_each(H.cleanup)

   it("exceeds the target by at most one packet", function()
      local d = H.tmpdir()
      local list = {}
      for k = 1, 50 do list[k] = { ts = ts(k), len = 60 + (k * 37) % 200 } end
      H.write_pcap(d .. "/in.pcap", list)
      local out, rc = run(d, "-o o_ --split-byte 1000 --filename-epoch-sec", "in.pcap")
      assert.are.equal(0, rc, out)
      local files = H.ls(d)
      local total = 0
      for _, f in ipairs(files) do
         if f:match("^o_") then
            local pkts = H.read(d .. "/" .. f)
            local bytes = 0
            for _, p in ipairs(pkts) do bytes = bytes + 16 + p.caplen end
            total = total + #pkts
            assert.is_true(bytes - (16 + pkts[#pkts].caplen) <= 1000, f .. " went on after passing the target")
            if f ~= files[#files - 1] then assert.is_true(bytes > 1000, f .. " split early") end
            -- named by its first packet
            assert.are.equal("o_" .. pkts[1].ts:sub(1, 10) .. ".pcap", f)
         end
      end
      assert.are.equal(50, total)
   end)

   it("--packet-chomp cuts both lengths and counts the cut size", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0), len = 64 }, { ts = ts(1), len = 100 } })
      local out, rc = run(d, "-o o_ --split-byte 1e9 --packet-chomp 4", "in.pcap")
      assert.are.equal(0, rc, out)
      local pkts = H.read(d .. "/o_20231114_221320.pcap")
      assert.are.equal(60, pkts[1].caplen)
      assert.are.equal(60, pkts[1].wire)
      assert.are.equal(96, pkts[2].caplen)
      assert.matches("Split Bytes%s+188 ", out)
   end)
end)
