-- push_pcap.lua end to end: generated traffic imported into a store and
-- pushed offline to several targets, with tcpdump and tshark as oracles;
-- a killed worker, an unwritable target, bad configs.
local H = require("spec.helper")

local function setup_root(targets, gen_args)
   local d = H.tmpdir()
   local env = ("export PUSHCAP_ROOT=%s PATH=%s:%s:%s/analytics:$PATH TZ=UTC &&"):format(d, H.build, H.bin, H.root)
   local function sh(cmd) return H.sh(("cd %s && %s %s"):format(d, env, cmd)) end
   local out, rc = H.sh(("%s/pcapgen %s -o %s/in.pcap"):format(H.build, gen_args, d))
   assert.are.equal(0, rc, out)
   out, rc = sh("stream_capture --store-size 64M --chunk-size 64K --import in.pcap --name cap")
   assert.are.equal(0, rc, out)
   H.sh("mkdir -p " .. d .. "/opt/fmadio/etc")
   local f = assert(io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w"))
   f:write("local Config = { Target = {} }\n")
   for _, t in ipairs(targets) do
      f:write("table.insert(Config.Target, {")
      for k, v in pairs(t) do
         f:write(("%s = %q, "):format(k, type(v) == "string" and v:gsub("ROOT", d) or v))
      end
      f:write("})\n")
   end
   f:write("return Config\n")
   f:close()
   return d, sh
end

-- records of all files in dir (sorted names), concatenated without headers
local function records(dir, decompress)
   local parts = {}
   for _, f in ipairs(H.ls(dir)) do
      assert.is_nil(f:match("pending$"), "left pending: " .. f)
      local data
      if decompress then
         data = H.sh(("%s < %s/%s"):format(decompress, dir, f))
      else
         data = H.slurp(dir .. "/" .. f)
      end
      parts[#parts + 1] = data:sub(25)
   end
   return table.concat(parts)
end

describe("push_pcap.lua", function()
   after_each(H.cleanup)

   it("pushes a capture offline to three targets that match the input, tshark's inner filter and zstd", function()
      local d, sh = setup_root({
         { Desc = "all", Mode = "File", Path = "ROOT/out/all/all-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS" },
         { Desc = "tcp_host", Mode = "file", Path = "ROOT/out/tcp/tcp-", Split = "--split-time 60e9",
           FileName = "--filename-epoch-sec", FilterBPF = "net 192.168.1.0/24 and tcp" },
         { Desc = "zstd", Mode = "FILE", Path = "ROOT/out/z/z-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS",
           PipeCmd = "zstd -c -1", FileSuffix = ".pcap.zst" },
      }, "-p isp -n 30000 -s 200 -S 3")
      local out, rc = sh("push_pcap.lua --force --offline cap")
      assert.are.equal(0, rc, out)
      assert.matches("push %[all +: finished%]", out)
      local input = H.slurp(d .. "/in.pcap"):sub(25)
      assert.is_true(records(d .. "/out/all") == input, "target 'all' differs from the input")
      assert.is_true(records(d .. "/out/z", "zstd -dc") == input, "target 'zstd' differs from the input")
      -- the filtered target holds exactly the frames tshark finds with an
      -- inner 192.168.1.0/24 endpoint and TCP, through every tunnel
      local want = H.sh(("tshark -r %s/in.pcap -Y 'ip.addr==192.168.1.0/24 && tcp' -T fields -e frame.number | wc -l"):format(d))
      local got = 0
      for _, f in ipairs(H.ls(d .. "/out/tcp")) do
         local info = H.sh(("capinfos -M -c %s/out/tcp/%s"):format(d, f))
         got = got + assert(tonumber(info:match("packets:%s+(%d+)")), info)
      end
      assert.are.equal(tonumber(want:match("%d+")), got)
      assert.is_true(got > 1000)
      local log = H.slurp(d .. "/mnt/store0/log/push_tcp_host.cur")
      assert.matches("New Split", log)
      assert.matches("Decap: 30000 packets", log)
   end)

   it("on plain traffic, a filtered target equals tcpdump's output byte for byte", function()
      local d, sh = setup_root({
         { Desc = "grp", Path = "ROOT/out/g/g-", Split = "--split-time 3600e9", FileName = "--filename-tstr-HHMMSS",
           FilterBPF = "udp and dst port 10001" },
      }, "-p finance -n 20000 -s 5 -S 2")
      local out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(0, rc, out)
      local files = H.ls(d .. "/out/g")
      assert.are.equal(1, #files)
      sh("tcpdump --time-stamp-precision=nano -r in.pcap -w want.pcap 'udp and dst port 10001' 2>/dev/null")
      assert.is_true(H.slurp(d .. "/out/g/" .. files[1]) == H.slurp(d .. "/want.pcap"), "differs from tcpdump")
   end)

   it("waits out a full disk and loses nothing, filtered or not", function()
      local d, sh = setup_root({
         { Desc = "all", Path = "ROOT/full/a/a-", Split = "--split-time 3600e9", FileName = "--filename-tstr-HHMMSS" },
         { Desc = "tcp", Path = "ROOT/full/t/t-", Split = "--split-time 3600e9", FileName = "--filename-tstr-HHMMSS",
           FilterBPF = "net 192.168.1.0/24 and tcp" },
      }, "-p isp -n 20000 -s 100 -S 6")
      -- room for a fraction of the output until the filler goes
      sh("mkdir full && mount -t tmpfs -o size=32m tmpfs full && mkdir full/a full/t && head -c 33400000 /dev/zero > full/filler")
      local out, rc = sh("{ (sleep 2; rm full/filler) & timeout 120 push_pcap.lua --offline cap; }")
      local a, t = records(d .. "/full/a"), records(d .. "/full/t")
      H.sh("umount " .. d .. "/full")
      assert.are.equal(0, rc, out)
      assert.matches("write failure. possibly out of disk space", H.sh("cat " .. d .. "/mnt/store0/log/push_all_*"))
      assert.is_true(a == H.slurp(d .. "/in.pcap"):sub(25), "target 'all' lost or repeated packets")
      -- the filtered target as a run with room to spare writes it
      sh("sed 's|/full/|/ref/|' opt/fmadio/etc/push_pcap.lua > ref.lua && mkdir -p ref/t ref/a")
      out, rc = sh("push_pcap.lua --config ref.lua --offline cap")
      assert.are.equal(0, rc, out)
      assert.is_true(#t > 100000)
      assert.is_true(t == records(d .. "/ref/t"), "target 'tcp' differs from the same push without a full disk")
   end)

   it("resumes a killed worker where its last split ended: every packet exactly once", function()
      local d, sh = setup_root({
         -- a slow new-split hook makes the worker easy to kill mid-run
         { Desc = "all", Path = "ROOT/out/a/a-", Split = "--split-time 10e9", FileName = "--filename-epoch-sec",
           ScriptNew = "sleep 0.2" },
      }, "-p isp -n 20000 -s 200 -S 5")
      local out = sh("{ timeout 120 push_pcap.lua --offline cap > sup.log 2>&1 & sup=$!; sleep 1.5; "
         .. "kill -KILL $(sed -n 's/.*started pid \\([0-9]*\\).*/\\1/p' sup.log | head -n 1); wait $sup; echo sup=$?; }")
      assert.matches("sup=0", out)
      local log = H.slurp(d .. "/sup.log")
      assert.matches("exited 137, restart", log)
      assert.matches("Resuming capture cap at chunk", H.sh("cat " .. d .. "/mnt/store0/log/push_all_*"))
      assert.is_true(records(d .. "/out/a") == H.slurp(d .. "/in.pcap"):sub(25), "packets lost or repeated")
      -- and as the same files as an uninterrupted split of the input
      sh("pcap_split -o ref/a- --split-time 10e9 --filename-epoch-sec < in.pcap > /dev/null")
      assert.are.same(H.ls(d .. "/ref"), H.ls(d .. "/out/a"))
   end)

   it("runs one push per config and per target; offline runs keep off the realtime position and can be run again", function()
      local d, sh = setup_root({
         { Desc = "all", Path = "ROOT/out/a/a-", Split = "--split-time 10e9", FileName = "--filename-epoch-sec",
           ScriptNew = "sleep 0.3" },
      }, "-p isp -n 5000 -s 100 -S 7")
      -- where a realtime push of this config left off
      local pos = d .. "/mnt/store0/push/push_pcap/all.pos"
      H.sh("mkdir -p " .. d .. "/mnt/store0/push/push_pcap && echo '99 7 3' > " .. pos)
      sh("( timeout 60 push_pcap.lua --offline cap > first.log 2>&1 & echo $! > first.pid ) > /dev/null 2>&1")
      local deadline = os.time() + 10
      while not (H.slurp(d .. "/first.log") or ""):match("started pid") and os.time() < deadline do H.sh("sleep 0.1") end
      local out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(1, rc, out)
      assert.matches("another push_pcap %(pid %d+%) is running with " .. d:gsub("%p", "%%%0"), out)
      -- a worker on its own (as one orphaned by a killed supervisor would be) is refused too
      out, rc = sh("push_pcap.lua --offline cap --worker 1")
      assert.are.equal(1, rc, out)
      assert.matches("all%.lock is held by pid %d+: not starting a second push of this target", out)
      sh("for i in $(seq 300); do kill -0 $(cat first.pid) 2>/dev/null || break; sleep 0.1; done")
      assert.matches("finished", H.slurp(d .. "/first.log"))
      assert.is_true(records(d .. "/out/a") == H.slurp(d .. "/in.pcap"):sub(25), "packets lost or repeated")
      assert.are.equal("99 7 3\n", H.slurp(pos))
      assert.is_nil(H.slurp(d .. "/mnt/store0/push/push_pcap/offline/all.pos"), "a finished offline run left its position")
      -- the same offline push again pushes everything again
      H.sh("rm -rf " .. d .. "/out")
      out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(0, rc, out)
      assert.is_true(records(d .. "/out/a") == H.slurp(d .. "/in.pcap"):sub(25), "the second run differs")
   end)

   it("refuses to guess when its saved position is unreadable", function()
      local d, sh = setup_root({
         { Desc = "all", Path = "ROOT/out/a/a-", Split = "--split-time 10e9", FileName = "--filename-epoch-sec" },
      }, "-p isp -n 500 -s 30 -S 8")
      H.sh("mkdir -p " .. d .. "/mnt/store0/push/push_pcap/offline && printf '1 2' > " .. d .. "/mnt/store0/push/push_pcap/offline/all.pos")
      local out, rc = sh("push_pcap.lua --offline cap --worker 1")
      assert.are.equal(1, rc, out)
      assert.matches("the saved position [^\n]+offline/all%.pos is unreadable %(\"1 2\"%): remove it to start afresh", out)
      assert.are.same({}, H.ls(d .. "/out/a"))
   end)

   it("redoes splits that could not be written once the target is fixed", function()
      local d, sh = setup_root({
         { Desc = "all", Path = "ROOT/out/blocked/a-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS" },
      }, "-p isp -n 5000 -s 200 -S 6")
      -- a file where the directory should be: mkdir fails until it goes
      H.sh("mkdir -p " .. d .. "/out && touch " .. d .. "/out/blocked")
      local out = sh("{ timeout 120 push_pcap.lua --offline cap > sup.log 2>&1 & sup=$!; sleep 2; rm out/blocked; wait $sup; echo sup=$?; }")
      assert.matches("sup=0", out)
      assert.matches("exited 3, restart", H.slurp(d .. "/sup.log"))
      assert.is_true(records(d .. "/out/blocked") == H.slurp(d .. "/in.pcap"):sub(25), "packets lost")
   end)

   it("the push_pcap and push_pcap_eod loaders log to analytics_<engine>.cur with the status lines", function()
      local d, sh = setup_root({
         { Desc = "all", Path = "ROOT/out/a/a-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS" },
      }, "-p isp -n 3000 -s 100 -S 8")
      local out, rc = sh(H.root .. "/analytics/push_pcap --offline cap")
      assert.are.equal(0, rc, out)
      local log = H.slurp(d .. "/mnt/store0/log/analytics_push_pcap.cur")
      assert.matches("push %[all                                      : stream_cat:true split:true%]", log)
      assert.matches("push %[all +: finished%]", log)
      -- a second schedule with its own config, as the FMADIO docs show
      H.sh(("sed 's|out/a/a-|out/eod/e-|' %s/opt/fmadio/etc/push_pcap.lua > %s/opt/fmadio/etc/push_pcap_eod.lua"):format(d, d))
      out, rc = sh(("PUSHCAP_ANALYTICS=%s/analytics %s/etc/analytics/push_pcap_eod --offline cap"):format(H.root, H.root))
      assert.are.equal(0, rc, out)
      assert.matches("finished", H.slurp(d .. "/mnt/store0/log/analytics_push_pcap_eod.cur"))
      assert.are.equal(2, #H.ls(d .. "/out/eod"))
   end)

   it("runs Post with the path of each finished file", function()
      local d, sh = setup_root({
         { Desc = "p", Path = "ROOT/out/p/p-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS",
           Post = "ls >> ROOT/post.log" },
      }, "-p isp -n 2000 -s 100 -S 7")
      local out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(0, rc, out)
      local files = H.ls(d .. "/out/p")
      local post = H.slurp(d .. "/post.log")
      for _, f in ipairs(files) do assert.is_truthy(post:find(d .. "/out/p/" .. f, 1, true), f) end
      assert.is_nil(post:find("pending", 1, true))
   end)

   it("refuses a bad config before starting anything, one message per problem", function()
      local d, sh = setup_root({
         { Desc = "a b", Path = "ROOT/x-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS" },
         { Desc = "c", Path = "ROOT/y-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS", FilterBPF = "tcp port 70000" },
         { Desc = "d", Mode = "Carrier", Path = "ROOT/z-", Split = "--split-time 60e9" },
      }, "-p isp -n 100 -S 1")
      local out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(1, rc)
      assert.matches('target 1 "a b".-Desc', out)
      assert.matches('target 2 "c".-FilterBPF', out)
      assert.matches('target 3 "d".-Mode', out)
      assert.matches("3 problem%(s%)", out)
      assert.matches('target 3 "d".-FileName: missing', out) -- a warning, not a problem
      assert.are.same({}, H.ls(d .. "/mnt/store0/log"))
      out, rc = sh("push_pcap.lua --config nosuch.lua")
      assert.are.equal(1, rc)
      assert.matches("push_pcap.lua.basic", out)
      out, rc = sh("push_pcap.lua --help")
      assert.are.equal(0, rc)
      assert.matches("%-%-offline", out)
   end)
end)
