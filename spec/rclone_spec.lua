-- RCLONE output mode against real servers on loopback: an S3-compatible
-- server (s3rver, installed by `make deps` into spec/s3server) and
-- `rclone serve webdav`.  pcap_split --rclone and a push_pcap.lua target
-- with Mode = "RCLONE" upload splits with the real rclone; the objects are
-- listed, downloaded and compared byte for byte with a local reference.
--
-- rclone 1.60 fails with LoadCustomCABundleError when AWS_CA_BUNDLE is set
-- (as it can be on these machines), even against plain http.  The test's
-- own rclone calls run without it, and so do pcap_split and push_pcap.lua,
-- whose spawned rclone inherits the environment (see docs/targets.md).
local H = require("spec.helper")

local S = require("spec.servers")
local NOCA = S.NOCA                       -- for the spec's own rclone calls
-- pushcap's rclone runs must work even when the variable is set (sink.lua drops it)
local WITHCA = "AWS_CA_BUNDLE=/nonexistent/ca-bundle.pem"
local BUCKET = "pushcap"

local srv = {}            -- state of the servers for this file
local OPTS = "--split-time 60e9 --pipe-cmd 'zstd -c -1' --filename-suffix .pcap.zst"

local q = S.q

-- A pushcap root with the rclone config at the appliance path.
local function write_conf(root)
   return S.rclone_conf(root, srv.s3.port, srv.dav.port)
end

local function rclone(args)
   return H.sh2(("%s timeout 60 rclone --config=%s %s"):format(NOCA, srv.conf, args))
end

-- The remote files under remote:dir/ (names, sorted) must equal the local
-- reference directory's files, byte for byte, with no .pending left.
local function compare_remote(remote_dir, ref_dir)
   local ref = H.ls(ref_dir)
   assert.is_true(#ref >= 3, "the reference has too few splits: " .. #ref)
   local out, err, rc = rclone("lsf -R " .. q(remote_dir))
   assert.are.equal(0, rc, err)
   local names = {}
   for l in out:gmatch("[^\n]+") do
      assert.is_nil(l:match("%.pending$"), "left pending on the remote: " .. l)
      names[#names + 1] = l
   end
   table.sort(names)
   assert.are.same(ref, names)
   for _, n in ipairs(names) do
      local data, cerr, crc = rclone("cat " .. q(remote_dir .. n))
      assert.are.equal(0, crc, cerr)
      local want = H.slurp(ref_dir .. "/" .. n)
      assert.is_true(#want > 24 and data == want,
         ("%s%s differs from the reference (%d bytes, want %d)"):format(remote_dir, n, #data, #want))
   end
   return names
end

local function gen(d)
   local out, rc = H.sh(("%s/pcapgen -p isp -n 20000 -s 200 -S 2 -o %s/in.pcap"):format(H.build, d))
   assert.are.equal(0, rc, out)
end

-- pcap_split to a local directory: the reference.
local function reference(d)
   local out, rc = H.sh(("cd %s && %s pcap_split -o %s/ref/all- %s < in.pcap"):format(d, H.env, d, OPTS))
   assert.are.equal(0, rc, out)
   return d .. "/ref"
end

describe("RCLONE mode against real servers", function()
   setup(function()
      srv.dir = io.popen("mktemp -d /tmp/pushcap-rclone.XXXXXX"):read("*l")
      H.sh(("mkdir -p %s/s3 %s/dav %s/root"):format(srv.dir, srv.dir, srv.dir))
      -- s3rver and rclone serve webdav on 127.0.0.1, ports the kernel picks,
      -- the bucket made up front
      srv.s3 = S.s3rver(srv.dir .. "/s3", BUCKET, srv.dir)
      srv.dav = S.webdav(srv.dir .. "/dav", srv.dir)
      srv.conf = write_conf(srv.dir .. "/root")
      -- both answer
      local _, err, rc = rclone("lsf s3:" .. BUCKET)
      assert(rc == 0, "s3rver does not answer: " .. err)
      _, err, rc = rclone("lsf dav:")
      assert(rc == 0, "rclone serve webdav does not answer: " .. err)
   end)

   teardown(function()
      if srv.s3 then srv.s3.stop() end
      if srv.dav then srv.dav.stop() end
      if srv.dir then H.sh("rm -rf " .. q(srv.dir)) end
   end)

   after_each(H.cleanup)

   -- pcap_split --rclone <flags> of fresh input to <remote:path/>all-:
   -- returns the directory, the local reference and the log
   local function split_to(flags, dest)
      local d = H.tmpdir()
      gen(d)
      local ref = reference(d)
      write_conf(d .. "/root")
      local out, rc = H.sh(("cd %s && %s %s PUSHCAP_ROOT=%s/root pcap_split --rclone %s -o %sall- %s < in.pcap")
         :format(d, WITHCA, H.env, d, flags, dest, OPTS))
      assert.are.equal(0, rc, out)
      return d, ref, out
   end

   it("pcap_split --rclone uploads to S3 (s3rver): objects equal the local reference, no .pending left", function()
      local _, ref, out = split_to("", "s3:" .. BUCKET .. "/split/")
      -- an object store: each split goes up under its final name, no moveto
      -- (a server-side copy and delete on S3)
      assert.is_nil(out:find("moveto", 1, true), out)
      assert.matches("rcat s3:" .. BUCKET .. "/split/all%-[%d_]+%.pcap%.zst%]", out)
      compare_remote("s3:" .. BUCKET .. "/split/", ref)
      -- and the objects hold the input's packets
      local total = 0
      for _, n in ipairs(H.ls(ref)) do
         local info = H.sh(("zstd -dc < %s/%s | capinfos -M -c -"):format(ref, n))
         total = total + assert(tonumber(info:match("packets:%s+(%d+)")), info)
      end
      assert.are.equal(20000, total)
   end)

   it("pcap_split --rclone --rclone-pending keeps the appliance's .pending and moveto on S3 too", function()
      local d, ref, out = split_to("--rclone-pending", "s3:" .. BUCKET .. "/pend/")
      assert.matches("rcat s3:" .. BUCKET .. "/pend/all%-[%d_]+%.pcap%.zst%.pending%]", out)
      assert.is_truthy(out:find("Cmd [rclone --config=" .. d .. "/root/opt/fmadio/etc/rclone.conf moveto", 1, true), out)
      compare_remote("s3:" .. BUCKET .. "/pend/", ref)
   end)

   it("pcap_split --rclone uploads to rclone serve webdav: files equal the local reference", function()
      local d, ref, out = split_to("", "dav:split/")
      -- a file store: written as .pending, then renamed
      assert.is_truthy(out:find("Cmd [rclone --config=" .. d .. "/root/opt/fmadio/etc/rclone.conf moveto", 1, true), out)
      compare_remote("dav:split/", ref)
      -- what the server stored on its disk is the same
      assert.are.same(H.ls(ref), H.ls(srv.dir .. "/dav/split"))
   end)

   it("push_pcap.lua with Mode = RCLONE targets (S3 and webdav) delivers what a File target writes", function()
      local d = H.tmpdir()
      gen(d)
      local env = ("export PUSHCAP_ROOT=%s PATH=%s:%s:%s/analytics:$PATH TZ=UTC &&"):format(d, H.build, H.bin, H.root)
      local out, rc = H.sh(("cd %s && %s stream_capture --store-size 64M --chunk-size 64K --import in.pcap --name cap")
         :format(d, env))
      assert.are.equal(0, rc, out)
      write_conf(d)
      local common = 'Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS", '
         .. 'PipeCmd = "zstd -c -1", FileSuffix = ".pcap.zst"'
      local f = assert(io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w"))
      f:write(([[
local Config = { Target = {} }
table.insert(Config.Target, { Desc = "ref", Mode = "File", Path = "%s/out/ref/all-", %s })
table.insert(Config.Target, { Desc = "s3", Mode = "RCLONE", Path = "s3:%s/push/all-", %s })
table.insert(Config.Target, { Desc = "dav", Mode = "RCLONE", Path = "dav:push/all-", %s })
return Config
]]):format(d, common, BUCKET, common, common))
      f:close()
      out, rc = H.sh(("cd %s && %s %s timeout 120 push_pcap.lua --force --offline cap"):format(d, env, WITHCA))
      assert.are.equal(0, rc, out)
      assert.matches("push %[s3 +: finished%]", out)
      assert.matches("push %[dav +: finished%]", out)
      local names = compare_remote("s3:" .. BUCKET .. "/push/", d .. "/out/ref")
      compare_remote("dav:push/", d .. "/out/ref")
      -- the reference target holds the input, record for record
      local input = H.slurp(d .. "/in.pcap"):sub(25)
      local parts = {}
      for _, n in ipairs(names) do
         parts[#parts + 1] = H.sh2(("zstd -dc < %s/out/ref/%s"):format(d, n)):sub(25)
      end
      assert.is_true(table.concat(parts) == input, "the pushed splits differ from the input")
      assert.is_nil((H.slurp(d .. "/mnt/store0/log/push_s3.cur") or "moveto"):find("moveto", 1, true))
      assert.matches("moveto", H.slurp(d .. "/mnt/store0/log/push_dav.cur") or "")
   end)
end)
