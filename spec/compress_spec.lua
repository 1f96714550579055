-- In-process compression: which pipe commands are recognised, and
-- pcap_split writing gzip/pigz/lz4/zstd itself, checked with the real
-- decompressors against an uncompressed run; a "spy" PATH shows whether a
-- compressor process was started.
local H = require("spec.helper")
local C = require("pushcap.ffi")
local compress = require("pushcap.compress")
local sink = require("pushcap.sink")

describe("compress.recognise", function()
   local cpus = compress.cpu_count()
   local G, L, Z = C.PC_COMP_GZIP, C.PC_COMP_LZ4, C.PC_COMP_ZSTD
   -- command, kind, level, threads (nil kind: not recognised)
   local cases = {
      { "gzip -c", G, 6, 1 }, { "gzip", G, 6, 1 }, { "gzip -c -1", G, 1, 1 }, { "gzip -c -9", G, 9, 1 },
      { "gzip -1 -c", G, 1, 1 }, { "gzip --fast", G, 1, 1 }, { "gzip --best -c", G, 9, 1 },
      { "gzip -c -q", G, 6, 1 }, { "gzip -9c", G, 9, 1 }, { "gzip -qc1", G, 1, 1 }, { "/bin/gzip -c -3", G, 3, 1 },
      { "  gzip   -c  -5  ", G, 5, 1 }, { "gzip --stdout -f", G, 6, 1 },
      { "pigz -c", G, 6, cpus }, { "pigz -p 4 -c -1", G, 1, 4 }, { "pigz --processes 2", G, 6, 2 },
      { "lz4 -c", L, 1, 1 }, { "lz4 -c -1", L, 1, 1 }, { "lz4 -c -9", L, 9, 1 }, { "lz4 -c -12", L, 12, 1 },
      { "lz4 -1 -c", L, 1, 1 }, { "lz4 -q -c", L, 1, 1 }, { "lz4 --best -c", L, 12, 1 }, { "/usr/bin/lz4 -c", L, 1, 1 },
      { "zstd -c", Z, 3, 1 }, { "zstd -c -1", Z, 1, 1 }, { "zstd -c -19", Z, 19, 1 }, { "zstd -c -T8", Z, 3, 8 },
      { "zstd -T0 -c -3", Z, 3, cpus }, { "zstd --fast -c", Z, -1, 1 }, { "zstd --fast=3 -c", Z, -3, 1 },
      { "zstd -q -c -1 -T2", Z, 1, 2 }, { "zstd --threads=4 -c", Z, 3, 4 }, { "zstd -qc", Z, 3, 1 },
      { "zstd -c --no-progress", Z, 3, 1 },
      -- not reproducible exactly: left to the shell
      { "gzip -c | cat" }, { "gzip -c > /dev/null" }, { "xz -c" }, { "bzip2 -c" }, { "cat" }, { "" },
      { "gzip -d" }, { "gzip -c -10" }, { "gzip -c -0" }, { "gzip -c -n" }, { "gzip -c --rsyncable" },
      { "lz4 -c -13" }, { "lz4 --fast -c" }, { "lz4 -c -B4" }, { "lz4 -BD -c" },
      { "zstd -c -20" }, { "zstd --ultra -22 -c" }, { "zstd -c --long" }, { "zstd -c -T" }, { "zstd -d -c" },
      { "zstd --fast=0 -c" }, { "zstd -c -" }, { "zstd -c $LEVEL" }, { "zstd -c -1 2>/dev/null" },
      { "'zstd' -c" }, { "pigz -c -11" }, { "pigz -p -c" }, { "/opt/bin/gzip -c" }, { "FOO=1 gzip -c" },
      { "gzip -c; rm -rf x" }, { "nice zstd -c" },
   }
   for _, c in ipairs(cases) do
      it(("'%s' -> %s"):format(c[1], c[2] and ("kind %d level %d threads %d"):format(c[2], c[3], c[4]) or "external"),
         function()
            local r = compress.recognise(c[1])
            if not c[2] then
               assert.is_nil(r)
            else
               assert.is_table(r)
               assert.are.same({ c[2], c[3], c[4] }, { r.kind, r.level, r.threads })
               assert.are.equal(({ [G] = ".pcap.gz", [L] = ".pcap.lz4", [Z] = ".pcap.zst" })[c[2]], r.suffix)
            end
         end)
   end

   it("is not fooled by non-strings", function()
      assert.is_nil(compress.recognise(nil))
      assert.is_nil(compress.recognise(42))
   end)
end)

describe("sink with a recognised pipe command", function()
   it("starts no compressor, needs no spool for a file, still spools uploads", function()
      local f = assert(sink.new({ mode = "file", pipe_cmd = "zstd -c -1" }))
      assert.is_table(f.comp)
      assert.is_false(sink.needs_spool(f))
      assert.are.equal("zstd -c -1 (in-process) > 'x.pending'", f:write_cmd("x.pending"))
      local r = assert(sink.new({ mode = "rclone", pipe_cmd = "gzip -c" }))
      assert.is_table(r.comp)
      assert.is_true(sink.needs_spool(r))
      for _, o in ipairs({ { pipe_external = true }, { compress = "external" } }) do
         o.mode, o.pipe_cmd = "file", "zstd -c -1"
         local e = assert(sink.new(o))
         assert.is_nil(e.comp)
         assert.is_true(sink.needs_spool(e))
         assert.are.equal("zstd -c -1 > 'x.pending'", e:write_cmd("x.pending"))
      end
      local u = assert(sink.new({ mode = "file", pipe_cmd = "gzip -c | cat" }))
      assert.is_nil(u.comp)
      sink.force_external(f)
      assert.is_nil(f.comp)
   end)
end)

-- ---- end to end -------------------------------------------------------------
local d, spy, ref_files

-- A directory of wrappers named like the compressors: each notes that it
-- ran, then runs the real program.
local function make_spy(dir)
   H.sh("mkdir -p " .. dir)
   for _, p in ipairs({ "gzip", "pigz", "lz4", "zstd", "xz" }) do
      local real = H.sh("command -v " .. p):match("(%S+)")
      local f = assert(io.open(dir .. "/" .. p, "w"))
      f:write(("#!/bin/sh\ntouch %s/ran.%s\nexec %s \"$@\"\n"):format(dir, p, real))
      f:close()
   end
   H.sh("chmod +x " .. dir .. "/*")
end

local function spied()
   local t = {}
   for _, f in ipairs(H.ls(spy)) do
      local p = f:match("^ran%.(.*)$")
      if p then t[#t + 1] = p end
   end
   H.sh("rm -f " .. spy .. "/ran.*")
   return t
end

local function split_run(args, env)
   return H.sh(("cd %s && TZ=UTC PUSHCAP_ROOT=%s PATH=%s:%s:%s:$PATH %s pcap_split --split-time 10e9 -i in.pcap %s")
      :format(d, H.scratch_root, spy, H.build, H.bin, env or "", args))
end

-- every reference split, decompressed from dir with the real tool, is equal
local function same_as_ref(dir, suffix, decompress)
   local got = H.ls(d .. "/" .. dir)
   local want = {}
   for i, f in ipairs(ref_files) do want[i] = f:gsub("%.pcap$", suffix) end
   assert.are.same(want, got)
   for i, f in ipairs(ref_files) do
      local plain, rc = H.sh(("%s < %s/%s/%s"):format(decompress, d, dir, got[i]))
      assert.are.equal(0, rc, plain)
      assert.is_true(plain == H.slurp(d .. "/ref/" .. f), got[i] .. " differs from the uncompressed split " .. f)
   end
end

describe("pcap_split --pipe-cmd in-process", function()
   setup(function()
      d = H.tmpdir()
      spy = d .. "/spy"
      make_spy(spy)
      local out, rc = H.sh(("%s/pcapgen -p isp -n 20000 -S 2 -o %s/in.pcap"):format(H.build, d))
      assert.are.equal(0, rc, out)
      out, rc = split_run("-o ref/o_")
      assert.are.equal(0, rc, out)
      ref_files = H.ls(d .. "/ref")
      assert.is_true(#ref_files >= 5, out)
   end)
   teardown(H.cleanup)

   local cases = {
      { "gzip -c -1", ".pcap.gz", "gzip -dc" }, { "gzip -c -6", ".pcap.gz", "gzip -dc" },
      { "pigz -p 2 -c -1", ".pcap.gz", "gzip -dc" },
      { "lz4 -c -1", ".pcap.lz4", "lz4 -dc" }, { "lz4 -c -9", ".pcap.lz4", "lz4 -dc" },
      { "zstd -c -1", ".pcap.zst", "zstd -dc" }, { "zstd -c -3", ".pcap.zst", "zstd -dc" },
      { "zstd --fast=3 -c", ".pcap.zst", "zstd -dc" }, { "zstd -c -T2", ".pcap.zst", "zstd -dc" },
   }
   for k, c in ipairs(cases) do
      it(("'%s' starts no process and the real decompressor restores every split"):format(c[1]), function()
         local dir = "in" .. k
         local out, rc = split_run(("-o %s/o_ --pipe-cmd '%s' --filename-suffix %s"):format(dir, c[1], c[2]))
         assert.are.equal(0, rc, out)
         assert.are.same({}, spied())
         local function lit(x) return (x:gsub("%p", "%%%0")) end
         assert.matches("%[" .. lit(c[1]) .. " %(in%-process%) > '" .. dir .. "/o_[%d_]+" .. lit(c[2])
            .. "%.pending'%]", out)
         same_as_ref(dir, c[2], c[3])
         -- the spool is not needed (nothing to fail) and not created
         assert.are.same({}, H.ls(H.scratch_root .. "/mnt/store0/spool"))
      end)
   end

   for k, c in ipairs({ { "gzip -c | cat", ".pcap.gz", "gzip -dc", "gzip" }, { "xz -c", ".pcap.xz", "xz -dc", "xz" },
                        { "zstd -c -1 -v", ".pcap.zst", "zstd -dc", "zstd" } }) do
      it(("'%s' is not recognised and runs as a command"):format(c[1]), function()
         local dir = "ext" .. k
         local out, rc = split_run(("-o %s/o_ --pipe-cmd '%s' --filename-suffix %s"):format(dir, c[1], c[2]))
         assert.are.equal(0, rc, out)
         assert.are.same({ c[4] }, spied())
         assert.is_nil(out:find("(in-process)", 1, true))
         same_as_ref(dir, c[2], c[3])
      end)
   end

   it("pipe_external in the engine config (push's Compress = \"external\") runs the command", function()
      local script = d .. "/ext.lua"
      local f = assert(io.open(script, "w"))
      f:write(([[
local C = require("pushcap.ffi")
local ffi = require("ffi")
local splitopts = require("pushcap.splitopts")
local split = require("pushcap.split")
local o = assert(splitopts.parse({ "-o", "%s/extcfg/o_", "--split-time", "10e9", "--pipe-cmd", "gzip -c -1",
                                   "--filename-suffix", ".pcap.gz" }))
local res = assert(splitopts.resolve(o))
assert(res.sink.comp, "recognised by default")
local e = split.new(splitopts.engine_config(o, res, { pipe_external = true, spool_dir = "%s/spool",
   out = function(s) io.write(s) end }))
assert(res.sink.comp == nil, "forced external")
local ebuf = ffi.new("char[512]")
local rd = assert(C.pc_reader_open(C.pc_open_read("%s/in.pcap"), ebuf, 512))
e:run(rd)
print("failed", e.failed_splits, "lost", e.lost_pkts)
]]):format(d, d, d))
      f:close()
      local out, rc = H.sh(("cd %s && PATH=%s:$PATH %s/fmadiolua %s"):format(d, spy, H.build, script))
      assert.are.equal(0, rc, out)
      assert.matches("failed\t0\tlost\t0", out)
      assert.are.same({ "gzip" }, spied())
      assert.matches("%[gzip %-c %-1 > '", out)
      same_as_ref("extcfg", ".pcap.gz", "gzip -dc")
   end)

   it("re-sends a failed upload from the plain spool copy, compressed again in-process", function()
      -- curl refuses its options the first time (it never reads stdin: the
      -- writer sees EPIPE), then uploads; file:// goes to the final name
      local args = ("$(if [ -e %s/curl_ok ]; then :; else touch %s/curl_ok; echo --no-such-option; fi)")
         :format(d, d)
      H.sh("mkdir " .. d .. "/up")
      local out, rc = split_run(("-o o_ --pipe-cmd 'zstd -c -1' --filename-suffix .pcap.zst --retry-delay 1e7 "
         .. "--spool-dir %s/spool --curl '%s' file://%s/up/"):format(d, args, d))
      assert.are.equal(0, rc, out)
      assert.matches("re%-sending from", out)
      assert.are.same({}, spied())
      assert.are.same({}, H.ls(d .. "/spool"))
      same_as_ref("up", ".pcap.zst", "zstd -dc")
   end)
end)

describe("in-process compression on a full disk", function()
   after_each(H.cleanup)
   for _, c in ipairs({ { "gzip -c -1", "gzip -dc" }, { "zstd -c -1", "zstd -dc" }, { "lz4 -c", "lz4 -dc" } }) do
      it(("'%s' waits out a full disk and loses nothing"):format(c[1]), function()
         local dd = H.tmpdir()
         -- ~45 KB of pcap in one split; compressed, more than the 4 KiB left
         local out, rc = H.sh(("%s/pcapgen -p isp -n 100 -s 30 -S 4 -t 1699999980000000000 -o %s/in.pcap")
            :format(H.build, dd))
         assert.are.equal(0, rc, out)
         H.sh(("mkdir %s/full && mount -t tmpfs -o size=64k tmpfs %s/full && head -c 60000 /dev/zero > %s/full/filler")
            :format(dd, dd, dd))
         out, rc = H.sh(("cd %s && (sleep 1.5; rm full/filler) & cd %s && TZ=UTC %s pcap_split -o full/o_ --split-time 60e9 "
            .. "--pipe-cmd '%s' --retry-delay 2e8 -i in.pcap"):format(dd, dd, H.env, c[1]))
         local files = H.ls(dd .. "/full")
         local plain = H.sh(("%s < %s/full/o_20231114_221300.pcap"):format(c[2], dd))
         H.sh("umount " .. dd .. "/full")
         assert.are.equal(0, rc, out)
         assert.matches("write failure. possibly out of disk space: No space left on device", out)
         assert.are.same({ "o_20231114_221300.pcap" }, files)
         assert.is_true(plain == H.slurp(dd .. "/in.pcap"), "the decompressed split differs from the input")
      end)
   end
end)
