-- pcap_split end to end: names, hooks, pipes, owners, renames, transports,
-- signals and bad input, with tcpdump/capinfos/editcap and the real
-- decompressors as the oracles.
local H = require("spec.helper")
local num = require("pushcap.num")

local S = 1000000000
local function ts(sec) return num.str(H.T0 + num.i64(sec * S)) end
local function tsn(sec, ns) return num.str(H.T0 + num.i64(sec) * S + num.i64(ns)) end

local function run(dir, args, input, env)
   return H.sh(("cd %s && %s %s pcap_split %s < %s"):format(dir, env or "TZ=UTC", H.env, args, input))
end

local function files(dir, pat)
   local t = {}
   for _, f in ipairs(H.ls(dir)) do if f:match(pat or "^o") then t[#t + 1] = f end end
   return t
end

describe("pcap_split file names", function()
   after_each(H.cleanup)
   -- first packet 1700000000.123456789, last 5 s later, byte mode
   local cases = {
      { "--filename-epoch-sec", "UTC", "o_1700000000.pcap" },
      { "--filename-epoch-sec-startend", "UTC", "o_1700000000-1700000005.pcap" },
      { "--filename-epoch-msec", "UTC", "o_1700000000123.pcap" },
      { "--filename-epoch-usec", "UTC", "o_1700000000123456.pcap" },
      { "--filename-epoch-nsec", "UTC", "o_1700000000123456789.pcap" },
      { "--filename-tstr-HHMM", "Asia/Kolkata", "o_20231115_0343.pcap" },
      { "--filename-tstr-HHMMSS", "Asia/Kolkata", "o_20231115_034320.pcap" },
      { "", "America/New_York", "o_20231114_171320.pcap" },
      { "--filename-tstr-HHMMSS_TZ", "Asia/Kolkata", "o_2023-11-15_03:43:20+05:30.pcap" },
      { "--filename-tstr-HHMMSS_TZ", "America/New_York", "o_2023-11-14_17:13:20-05:00.pcap" },
      { "--filename-tstr-HHMMSS_TZ", "UTC", "o_2023-11-14_22:13:20+00:00.pcap" },
      { "--filename-tstr-HHMMSS_NS", "Asia/Kolkata", "o_20231115_034320.123.456.789.pcap" },
      { "--filename-tstr-HHMMSS_SUB", "Asia/Kolkata", "o_20231115_03-43-20.123456789.pcap" },
      { "--filename-strftime '%Y%m%d%H%M%S'", "UTC", "o_20231114221320.pcap" },
   }
   for _, c in ipairs(cases) do
      it(c[1] .. " in " .. c[2], function()
         local d = H.tmpdir()
         H.write_pcap(d .. "/in.pcap", { { ts = tsn(0, 123456789) }, { ts = tsn(5, 1) } })
         local out, rc = run(d, "-o o_ --split-byte 1e9 " .. c[1], "in.pcap", "TZ=" .. c[2])
         assert.are.equal(0, rc, out)
         assert.are.same({ c[3] }, files(d))
      end)
   end

   it("time mode names use the boundaries, startend included", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = tsn(0, 123456789) }, { ts = ts(50) } })
      local out, rc = run(d, "-o o_ --split-time 60e9 --filename-epoch-sec-startend", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ "o_1699999980-1700000040.pcap", "o_1700000040-1700000100.pcap" }, files(d))
   end)

   it("strftime with '/' creates the directories, and so does a missing -o directory", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) } })
      local out, rc = run(d, "-o new/dir/o_ --split-time 60e9 --filename-strftime %Y/%m/%d/%H%M --filename-suffix .cap",
         "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ "2213.cap" }, H.ls(d .. "/new/dir/o_2023/11/14"))
   end)
end)

describe("pcap_split output", function()
   after_each(H.cleanup)

   it("writes splits that capinfos and tcpdump accept and that concatenate to the input, matching editcap -i", function()
      local d = H.tmpdir()
      -- start on a minute so editcap's intervals and our aligned boundaries coincide
      local _, rc = H.sh(("%s/pcapgen -p isp -n 30000 -s 300 -S 5 -t 1699999980000000000 -o %s/in.pcap"):format(H.build, d))
      assert.are.equal(0, rc)
      local out
      out, rc = run(d, "-o s/o_ --split-time 60e9", "in.pcap")
      assert.are.equal(0, rc, out)
      local ours = files(d .. "/s")
      assert.are.equal(5, #ours)
      local counts, cat = {}, {}
      for _, f in ipairs(ours) do
         local info, irc = H.sh(("capinfos -M -c -T %s/s/%s"):format(d, f))
         assert.are.equal(0, irc, info)
         counts[#counts + 1] = tonumber(info:match("\t(%d+)%s*$"))
         local tout, trc = H.sh(("tcpdump --count -r %s/s/%s"):format(d, f))
         assert.are.equal(0, trc, tout)
         assert.are.equal(counts[#counts], tonumber(tout:match("(%d+) packets")))
         cat[#cat + 1] = H.slurp(d .. "/s/" .. f):sub(25)
      end
      assert.is_true(table.concat(cat) == H.slurp(d .. "/in.pcap"):sub(25), "splits differ from the input")
      H.sh(("mkdir %s/e && editcap -F nsecpcap -i 60 %s/in.pcap %s/e/x.pcap"):format(d, d, d))
      local theirs = {}
      for _, f in ipairs(H.ls(d .. "/e")) do
         local info = H.sh(("capinfos -M -c -T %s/e/%s"):format(d, f))
         theirs[#theirs + 1] = tonumber(info:match("\t(%d+)%s*$"))
      end
      assert.are.same(theirs, counts)
   end)

   for _, c in ipairs({ { "gzip -c -1", ".pcap.gz", "gzip -dc" }, { "zstd -c -q", ".pcap.zst", "zstd -dcq" },
                        { "lz4 -c -q", ".pcap.lz4", "lz4 -dcq" } }) do
      it("--pipe-cmd '" .. c[1] .. "' lands compressed files the real decompressor restores", function()
         local d = H.tmpdir()
         H.write_pcap(d .. "/in.pcap", { { ts = ts(0), len = 300 }, { ts = ts(30), len = 900 }, { ts = ts(70) } })
         local out, rc = run(d, ("-o o_ --split-time 60e9 --pipe-cmd '%s' --filename-suffix %s --spool-dir %s/spool")
            :format(c[1], c[2], d), "in.pcap")
         assert.are.equal(0, rc, out)
         local got = files(d)
         assert.are.same({ "o_20231114_221300" .. c[2], "o_20231114_221400" .. c[2] }, got)
         local plain = H.sh(("%s < %s/%s > %s/p.pcap && tcpdump -nn -r %s/p.pcap 2>/dev/null | wc -l")
            :format(c[3], d, got[1], d, d))
         assert.are.equal(2, tonumber(plain:match("(%d+)%s*$")))
         assert.are.same({}, H.ls(d .. "/spool"))
      end)
   end

   it("runs the new script before each split and the close script with FMADIO's arguments", function()
      local d = H.tmpdir()
      local f = io.open(d .. "/hook.sh", "w")
      f:write('#!/bin/sh\necho "$*" >> "$(dirname "$0")/hooks.log"\nls "$(dirname "$0")" | grep -c pending >> "$(dirname "$0")/hooks.log"\n')
      f:close()
      H.sh("chmod +x " .. d .. "/hook.sh")
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0), len = 100 }, { ts = ts(30), len = 100 }, { ts = ts(50), len = 100 } })
      local out, rc = run(d, ("-o o_ --split-time 60e9 --script-new '%s/hook.sh new' --script-close %s/hook.sh")
         :format(d, d), "in.pcap")
      assert.are.equal(0, rc, out)
      local lines = {}
      for l in io.lines(d .. "/hooks.log") do lines[#lines + 1] = l end
      local b1, b2 = num.str(H.T0 - 20 * S), num.str(H.T0 + 40 * S)
      -- new; close of file 1 (A=its boundary, B=next, trigger = 22:14:10);
      -- new; final close (A=previous boundary, B=its own, trigger = last)
      assert.are.equal("new", lines[1])
      local a = {}
      for w in lines[3]:gmatch("%S+") do a[#a + 1] = w end
      assert.are.equal("o_20231114_221300.pcap", a[1])
      assert.are.same({ "232", "2" }, { a[2], a[3] })
      assert.are.same({ num.str(50 * S), b1, b2, ts(0), ts(30), ts(50) }, { a[5], a[6], a[7], a[8], a[9], a[10] })
      assert.are.equal("1", lines[4], "the close script should see the .pending file")
      assert.are.equal("new", lines[5])
      a = {}
      for w in lines[7]:gmatch("%S+") do a[#a + 1] = w end
      assert.are.same({ "o_20231114_221400.pcap", "116", "1", "0", b1, b2, ts(50), ts(50), ts(50) },
         { a[1], a[2], a[3], a[5], a[6], a[7], a[8], a[9], a[10] })
      assert.is_truthy(out:find("Script [" .. d .. "/hook.sh o_20231114_221300.pcap 232 2", 1, true))
   end)

   it("passes 'FILE:name' to the close script in byte mode", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0), len = 100 }, { ts = ts(1), len = 100 }, { ts = ts(2) } })
      local out, rc = run(d, "-o o_ --split-byte 100 --filename-epoch-sec --script-close 'echo >> hooks.log'", "in.pcap")
      assert.are.equal(0, rc, out)
      local log = H.slurp(d .. "/hooks.log")
      assert.matches("^FILE:o_1700000000.pcap 116 1 %d+ 1000000000 " .. ts(0) .. " " .. ts(0) .. "\n", log)
   end)

   it("-Z chowns every finished file (user.group, user:group and uid:gid forms)", function()
      for _, z in ipairs({ "nobody", "nobody.nogroup", "nobody:nogroup", "65534:65534" }) do
         local d = H.tmpdir()
         H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(50) } })
         local out, rc = run(d, "-o o_ --split-time 60e9 -Z " .. z, "in.pcap")
         assert.are.equal(0, rc, out)
         local owners = H.sh(("stat -c '%%U' %s/o_*"):format(d))
         assert.are.equal("nobody\nnobody\n", owners)
      end
   end)

   it("--null writes nothing and --cpu pins the process", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(100) } })
      local out, rc = run(d, "-o o_ --split-time 60e9 --null --cpu 0 --uid push_1", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({}, files(d))
      assert.matches("Total Splits 2 Total Pkts 2 Lost Pkts 0", out)
   end)

   it("--rclone streams with the real rclone to .pending and renames with moveto", function()
      local d = H.tmpdir()
      H.sh(("mkdir -p %s/root/opt/fmadio/etc %s/remote && printf '[loc]\\ntype = local\\n' > %s/root/opt/fmadio/etc/rclone.conf")
         :format(d, d, d))
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(50) } })
      local out, rc = run(d, ("--root %s/root -o loc:%s/remote/o_ --split-time 60e9 --rclone --pipe-cmd 'gzip -c' --filename-suffix .pcap.gz")
         :format(d, d), "in.pcap")
      assert.are.equal(0, rc, out)
      assert.are.same({ "o_20231114_221300.pcap.gz", "o_20231114_221400.pcap.gz" }, H.ls(d .. "/remote"))
      assert.is_truthy(out:find("Cmd [rclone --config=" .. d .. "/root/opt/fmadio/etc/rclone.conf moveto", 1, true))
      local n = H.sh(("zcat %s/remote/o_20231114_221300.pcap.gz | tcpdump -r - 2>/dev/null | wc -l"):format(d))
      assert.are.equal(1, tonumber(n:match("%d+")))
   end)

   it("--curl uploads with the real curl (file:// URL) under the -o prefix", function()
      local d = H.tmpdir()
      H.sh("mkdir " .. d .. "/up")
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) } })
      local out, rc = run(d, ("-o o_ --split-time 60e9 --curl '--create-dirs' file://%s/up/dev-"):format(d), "in.pcap")
      assert.are.equal(0, rc, out)
      -- file:// has no rename, so the upload goes straight to the final name
      assert.are.same({ "dev-o_20231114_221300.pcap" }, H.ls(d .. "/up"))
      assert.are.equal(H.slurp(d .. "/in.pcap"), H.slurp(d .. "/up/dev-o_20231114_221300.pcap"))
   end)
end)

describe("pcap_split failures", function()
   after_each(H.cleanup)

   it("re-sends a split whose pipe command failed, from the spool copy", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0), len = 500 }, { ts = ts(1), len = 500 } })
      -- fails on its first run only
      local pipe = ("if [ -e %s/ran ]; then cat; else touch %s/ran; exit 3; fi"):format(d, d)
      local out, rc = run(d, ("-o o_ --split-time 60e9 --pipe-cmd '%s' --spool-dir %s/spool --retry-delay 1e7")
         :format(pipe, d), "in.pcap")
      assert.are.equal(0, rc, out)
      assert.matches("re%-sending from", out)
      assert.are.equal(H.slurp(d .. "/in.pcap"), H.slurp(d .. "/o_20231114_221300.pcap"))
      assert.are.same({}, H.ls(d .. "/spool"))
   end)

   it("keeps the packets of a split that cannot be delivered and exits 1", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0), len = 500 }, { ts = ts(50), len = 500 } })
      local out, rc = run(d, ("-o o_ --split-time 60e9 --pipe-cmd 'cat > /dev/null; exit 4' --spool-dir %s/spool --retry 2 --retry-delay 1e7")
         :format(d), "in.pcap")
      assert.are.equal(1, rc, out)
      assert.matches("giving up on o_20231114_221300.pcap after 2 attempts", out)
      assert.are.same({ "o_20231114_221300.pcap.unsent.pcap", "o_20231114_221400.pcap.unsent.pcap" }, H.ls(d .. "/spool"))
      assert.are.same({}, files(d, "pending"))
      local pkts = H.read(d .. "/spool/o_20231114_221300.pcap.unsent.pcap")
      assert.are.equal(1, #pkts)
   end)

   it("waits out a full disk and loses nothing", function()
      local d = H.tmpdir()
      H.sh(("mkdir %s/full && mount -t tmpfs -o size=64k tmpfs %s/full && head -c 60000 /dev/zero > %s/full/filler")
         :format(d, d, d))
      local list = {}
      for k = 1, 40 do list[k] = { ts = ts(k), len = 1000 } end
      H.write_pcap(d .. "/in.pcap", list)
      -- free the space after the writer has hit ENOSPC a few times
      local out, rc = H.sh(("cd %s && (sleep 1.5; rm full/filler) & cd %s && TZ=UTC %s pcap_split -o full/o_ --split-time 60e9 --retry-delay 2e8 < in.pcap")
         :format(d, d, H.env))
      local ok = H.slurp(d .. "/full/o_20231114_221300.pcap")
      H.sh("umount " .. d .. "/full")
      assert.are.equal(0, rc, out)
      assert.matches("write failure. possibly out of disk space: No space left on device", out)
      assert.are.equal(H.slurp(d .. "/in.pcap"), ok)
   end)

   it("finishes the current split and exits 0 on SIGTERM", function()
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) }, { ts = ts(50) } })
      H.write_pcap(d .. "/more.pcap", { { ts = ts(51) } })
      -- the input stays open (a FIFO held by the shell) so only the signal can
      -- stop it; the second write after a pause shows the progress line
      local out = H.sh(("cd %s && mkfifo fifo && { TZ=UTC %s pcap_split -o o_ --split-time 60e9 < fifo > log 2>&1 & pid=$!; "
         .. "exec 3>fifo; cat in.pcap >&3; sleep 1.2; tail -c +25 more.pcap >&3; sleep 0.5; kill -TERM $pid; wait $pid; "
         .. "echo exit=$?; exec 3>&-; }"):format(d, H.env))
      assert.matches("%] o_20231114_221400.pcap : Total Bytes +%d+ +3 0.000 GB Speed: [%d.]+ Gbps [%d.]+ Mpps : TotalSplit 2 PCAPTS: "
         .. ts(51), H.slurp(d .. "/log"))
      assert.matches("exit=0", out)
      assert.are.same({ "o_20231114_221300.pcap", "o_20231114_221400.pcap" }, files(d))
      assert.matches("Stopped by signal 15", H.slurp(d .. "/log"))
   end)

   local bad = {
      { "--split-time 60e9 --bogus", 2, "unknown command %[%-%-bogus%]" },
      { "-o x", 2, "no split type time/bytes specified" },
      { "--split-time abc", 2, "'abc' is not a non%-negative number" },
      { "--split-time 0", 2, "greater than 0" },
      { "--split-time 60e9 -Z no_such_user_x", 2, "unknown user 'no_such_user_x'" },
      { "--split-time 60e9 --curl onlyone", 2, "needs a value" },
      { "--split-time 60e9 --cpu 0,x", 2, "'x' is not a CPU number" },
      { "--split-time 60e9 --filename-strftime", 2, "needs a value" },
   }
   for _, b in ipairs(bad) do
      it("refuses '" .. b[1] .. "' with exit " .. b[2], function()
         local d = H.tmpdir()
         H.write_pcap(d .. "/in.pcap", { { ts = ts(0) } })
         local out, rc = run(d, b[1], "in.pcap")
         assert.are.equal(b[2], rc, out)
         assert.matches(b[3], out)
         assert.are.same({}, files(d, "^x"))
      end)
   end

   it("refuses a non-capture input with a message naming the offset", function()
      local d = H.tmpdir()
      local out, rc = run(d, "--split-time 60e9", H.testdata .. "/formats/malformed.pcap")
      assert.are.equal(1, rc)
      assert.matches("magic 0x73696874 at byte offset 0", out)
   end)

   it("keeps the good packets of a truncated input in renamed files and exits 1", function()
      local d = H.tmpdir()
      local out, rc = run(d, "-o o_ --split-time 60e9", H.testdata .. "/formats/truncated-mid-record.pcap")
      assert.are.equal(1, rc)
      assert.matches("truncated input: pcap record at byte offset 712", out)
      assert.are.same({ "o_20041205_191600.pcap" }, files(d))
      assert.are.equal(2, #H.read(d .. "/o_20041205_191600.pcap"))
   end)

   it("--help and -v work", function()
      local out, rc = H.sh(H.env .. " pcap_split --help")
      assert.are.equal(0, rc)
      assert.matches("%-%-filename%-tstr%-HHMMSS_SUB", out)
      local d = H.tmpdir()
      H.write_pcap(d .. "/in.pcap", { { ts = ts(0) } })
      out, rc = run(d, "-v -o o_ --split-time 60e9", "in.pcap")
      assert.are.equal(0, rc, out)
      assert.matches("Input: 104 bytes 1 packets", out)
   end)
end)
