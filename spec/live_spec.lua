-- Live capture (stream_capture --interface) over a real veth pair: one end
-- in a network namespace this spec creates, traffic sent into the other end
-- with tcpreplay, captured in the root namespace.  Needs root, ip(8) and
-- tcpreplay (make deps).  Everything it creates is named after this run
-- (pid and random digits) and is removed in teardown, whatever happened.
local H = require("spec.helper")
local ffi = require("ffi")
local C = require("pushcap.ffi")
local num = require("pushcap.num")

-- names unique to this run: pids alone may repeat across pid namespaces
-- that share this network namespace, so add random bits
local pid = C.pc_getpid()
local urandom = assert(io.open("/dev/urandom", "rb"))
local rnd = urandom:read(3)
urandom:close()
local RUN = (pid * 65536 + rnd:byte(1) * 65536 + rnd:byte(2) * 256 + rnd:byte(3)) % 10000000
local NS = "pcns" .. pid .. "-" .. RUN
local IF = "pcv0-" .. RUN   -- root namespace end (we capture here)
local PEER = "pcv1-" .. RUN -- namespace end (tcpreplay sends here)
local NET = "198.18.%d.%d/30"
local FILTER = "udp and dst net 239.10.0.0/16" -- what the finance profile sends

local function must(cmd)
   local out, rc = H.sh(cmd)
   assert(rc == 0, cmd .. ": " .. out)
   return out
end

local function veth_up()
   must("ip netns add " .. NS)
   must(("ip link add %s type veth peer name %s"):format(IF, PEER))
   must(("ip link set %s netns %s"):format(PEER, NS))
   -- no IPv6 on either end: no router solicitations or MLD reports
   must(("sysctl -qw net.ipv6.conf.%s.disable_ipv6=1"):format(IF))
   must(("ip netns exec %s sysctl -qw net.ipv6.conf.%s.disable_ipv6=1"):format(NS, PEER))
   local b = RUN % 250
   must(("ip addr add %s dev %s && ip link set %s up"):format(NET:format(b, 1), IF, IF))
   must(("ip netns exec %s sh -c 'ip addr add %s dev %s && ip link set %s up && ip link set lo up'")
      :format(NS, NET:format(b, 2), PEER, PEER))
end

-- the background processes a test started (pid file, exit-status file),
-- stopped in after_each if they still run (no exit status written yet)
local started = {}
local function kill_started()
   for _, f in ipairs(started) do
      local p = tonumber(H.slurp(f.pid) or "")
      if p and not H.slurp(f.rc) then
         H.sh(("kill -TERM %d 2>/dev/null; sleep 0.5; [ -e %s ] || kill -KILL %d 2>/dev/null"):format(p, f.rc, p))
      end
   end
   started = {}
end

local function veth_down()
   -- deleting one end deletes the pair; deleting the namespace does too
   H.sh(("ip link del %s 2>/dev/null; ip netns del %s 2>/dev/null"):format(IF, NS))
end

-- A store under a fresh root and a shell runner in it (as store_spec).
local function new_root()
   local d = H.tmpdir()
   local env = ("export PUSHCAP_ROOT=%s PATH=%s:%s:$PATH TZ=UTC &&"):format(d, H.build, H.bin)
   local function sh(cmd) return H.sh(("cd %s && %s %s"):format(d, env, cmd)) end
   local out, rc = sh("stream_capture --create-store 64M")
   assert.are.equal(0, rc, out)
   return d, sh
end

local function gen(sh, name, args)
   local out, rc = sh(("pcapgen %s -o %s"):format(args, name))
   assert.are.equal(0, rc, out)
end

-- Starts stream_capture in the background; its stderr goes to <tag>.log,
-- its exit status to <tag>.rc.  Returns once it is capturing.
local function start_capture(d, sh, tag, args)
   sh(("( stream_capture --interface %s %s > %s.log 2>&1 & echo $! > %s.pid; wait $!; echo $? > %s.rc ) "
      .. "> /dev/null 2>&1 & true"):format(IF, args, tag, tag, tag))
   started[#started + 1] = { pid = d .. "/" .. tag .. ".pid", rc = d .. "/" .. tag .. ".rc" }
   for _ = 1, 100 do
      local log = H.slurp(d .. "/" .. tag .. ".log") or ""
      if log:match("capturing on") then return end
      if H.slurp(d .. "/" .. tag .. ".rc") then break end
      C.pc_sleep_ns(50e6)
   end
   error("stream_capture did not start: " .. (H.slurp(d .. "/" .. tag .. ".log") or ""))
end

-- Waits for the background capture to exit (after SIGTERM when term);
-- returns its exit status and log.
local function stop_capture(d, sh, tag, term)
   if term then sh(("kill -TERM $(cat %s.pid)"):format(tag)) end
   for _ = 1, 200 do
      local rc = H.slurp(d .. "/" .. tag .. ".rc")
      if rc and rc:match("%d") then return tonumber(rc), H.slurp(d .. "/" .. tag .. ".log") end
      C.pc_sleep_ns(50e6)
   end
   sh(("kill -KILL $(cat %s.pid)"):format(tag))
   error("stream_capture did not stop: " .. (H.slurp(d .. "/" .. tag .. ".log") or ""))
end

-- Sends a pcap into the veth from the namespace; returns the packets
-- tcpreplay says it sent.
local function replay(sh, file, rate)
   local out, rc = sh(("ip netns exec %s tcpreplay -i %s %s %s"):format(NS, PEER, rate or "--pps 20000", file))
   assert.are.equal(0, rc, out)
   local sent = tonumber(out:match("Successful packets:%s*(%d+)"))
   assert.is_not_nil(sent, out)
   return sent
end

-- Every capture's metadata, by name.
local function metas(d)
   local dir = d .. "/mnt/store0/capture/captures/"
   local t = {}
   for _, f in ipairs(H.ls(dir)) do
      if f:match("%.meta$") then
         local m = {}
         for k, v in (H.slurp(dir .. f) or ""):gmatch("([%w_]+)=([^\n]*)") do m[k] = v end
         t[m.name] = m
      end
   end
   return t
end

-- Counts frames (bytes only; timestamps differ by nature) in a list of packets.
local function bag(pkts)
   local b = {}
   for _, p in ipairs(pkts) do b[p.data] = (b[p.data] or 0) + 1 end
   return b
end

-- Every captured frame is one that was sent (as often as it was sent), and
-- captured + kernel drops = sent.
local function check_accounting(sent_pkts, sent, got, drops)
   assert.are.equal(sent, #sent_pkts, "tcpreplay sent a different number of packets than the file holds")
   local want = bag(sent_pkts)
   for k, p in ipairs(got) do
      local c = want[p.data]
      if not c or c == 0 then error(("captured packet %d (%d bytes) was never sent"):format(k, p.caplen)) end
      want[p.data] = c - 1
      assert.are.equal(p.caplen, p.wire)
   end
   assert.are.equal(sent, #got + drops, ("sent %d, captured %d, kernel drops %d"):format(sent, #got, drops))
end

describe("live capture", function()
   setup(function()
      veth_down()
      veth_up()
   end)
   after_each(kill_started)
   teardown(function()
      kill_started()
      veth_down()
      H.cleanup()
   end)

   it("documents the live options in --help", function()
      local out, rc = H.sh(H.env .. " stream_capture --help")
      assert.are.equal(0, rc, out)
      for _, opt in ipairs({ "--interface IF", "-i IF", "--snaplen", "65535", "--promisc", "--no-promisc",
                             "--filter", "--buffer-size", "--roll-period", "--flush-idle", "--sync-period",
                             "--count", "--duration", "TimeOffset", "kernel_drops" }) do
         assert.is_truthy(out:find(opt, 1, true), "--help does not mention " .. opt)
      end
   end)

   it("refuses a bad interface with a clear error, exit 1, and no store change", function()
      local d, sh = new_root()
      local out, rc = sh("stream_capture --interface nosuch" .. pid .. " --name x")
      assert.are.equal(1, rc, out)
      assert.matches("cannot capture on nosuch%d+: No such device", out)
      assert.is_nil(next(metas(d)), "a capture was created")
      out, rc = sh("stream_capture --interface " .. IF .. " --filter 'udp and (' --name x")
      assert.are.equal(1, rc, out)
      assert.matches("filter \"udp and %(\":.*syntax error", out)
      out, rc = sh("stream_capture --interface " .. IF .. " --snaplen 70000")
      assert.are.equal(2, rc, out)
      assert.matches("at most 65535", out)
   end)

   it("captures every packet sent (or counts it as a kernel drop), with ns timestamps, and stops cleanly on SIGTERM", function()
      local d, sh = new_root()
      gen(sh, "x.pcap", "-p finance -n 5000 -S 1")
      start_capture(d, sh, "cap", "--name live --filter '" .. FILTER .. "'")
      local t_before = C.pc_now_ns()
      local sent = replay(sh, "x.pcap")
      local t_after = C.pc_now_ns()
      C.pc_sleep_ns(300e6)
      local rc, log = stop_capture(d, sh, "cap", true)
      assert.are.equal(0, rc, log)
      assert.matches("capturing on " .. IF:gsub("%-", "%%-") .. " %(linktype 1, snaplen 65535, promisc on, filter \"udp and dst net 239.10.0.0/16\", nanosecond timestamps%)", log)
      assert.matches("received %d+, stored %d+, dropped %d+ %(kernel %d+, interface %d+%); stopped by signal", log)
      local m = metas(d).live
      assert.are.equal("1", m.closed)
      assert.are.equal("live:" .. IF, m.source)
      local out
      out, rc = sh("stream_cat live > out.pcap")
      assert.are.equal(0, rc, out)
      local got = H.read(d .. "/out.pcap")
      check_accounting(H.read(d .. "/x.pcap"), sent, got, tonumber(m.kernel_drops))
      assert.are.equal(#got, tonumber(m.packets))
      io.stderr:write(("\n# live: sent %d, captured %d, kernel drops %s\n"):format(sent, #got, m.kernel_drops))
      -- kernel timestamps: nanosecond precision, in order, taken while we sent
      local sub_us, prev = 0, num.i64(0)
      for k, p in ipairs(got) do
         local ts = num.parse(p.ts)
         assert.is_true(ts >= prev, ("packet %d goes back in time"):format(k))
         assert.is_true(ts >= t_before - 1e9 and ts <= t_after + 1e9, ("packet %d: ts %s outside the send window"):format(k, p.ts))
         if ts % 1000 ~= 0 then sub_us = sub_us + 1 end
         prev = ts
      end
      assert.is_true(sub_us > #got / 2, ("only %d of %d timestamps have sub-microsecond digits"):format(sub_us, #got))
      -- the store is usable by the next writer: nothing was left open
      out = sh("stream_cat --list")
      assert.matches("\n1 +live .* no\n", out)
      assert.not_matches("active", out)
   end)

   it("accounts for every packet when the kernel drops some (tiny buffer, top speed)", function()
      local d, sh = new_root()
      gen(sh, "x.pcap", "-p finance -n 30000 -S 4")
      start_capture(d, sh, "cap", "--name flood --buffer-size 64K --filter '" .. FILTER .. "'")
      local sent = replay(sh, "x.pcap", "--topspeed")
      C.pc_sleep_ns(300e6)
      local rc, log = stop_capture(d, sh, "cap", true)
      assert.are.equal(0, rc, log)
      local m = metas(d).flood
      local out
      out, rc = sh("stream_cat flood > out.pcap")
      assert.are.equal(0, rc, out)
      local got = H.read(d .. "/out.pcap")
      io.stderr:write(("\n# flood: sent %d, captured %d, kernel drops %s\n"):format(sent, #got, m.kernel_drops))
      check_accounting(H.read(d .. "/x.pcap"), sent, got, tonumber(m.kernel_drops))
      assert.matches(("dropped %s %%(kernel"):format(m.kernel_drops), log)
   end)

   it("makes a burst after an idle second visible to a follower within about a second, and ticks while idle", function()
      local d, sh = new_root()
      gen(sh, "burst.pcap", "-p finance -n 200 -S 7")
      start_capture(d, sh, "cap", "--name idle --filter '" .. FILTER .. "' --flush-idle 1e9")
      sh("( stream_cat -f idle > f.pcap 2> f.log & echo $! > f.pid; wait $!; echo $? > f.rc ) > /dev/null 2>&1 & true")
      started[#started + 1] = { pid = d .. "/f.pid", rc = d .. "/f.rc" }
      C.pc_sleep_ns(1300e6) -- idle for longer than --flush-idle
      local sent = replay(sh, "burst.pcap", "--pps 5000")
      local t_sent = C.pc_mono_ns()
      local seen, latency = 0, nil
      while C.pc_mono_ns() - t_sent < 3e9 do
         local pk = H.read(d .. "/f.pcap")
         seen = pk and #pk or 0
         if seen >= sent then
            latency = tonumber(C.pc_mono_ns() - t_sent) / 1e9
            break
         end
         C.pc_sleep_ns(20e6)
      end
      assert.is_not_nil(latency, ("the follower shows %d of %d packets 3 s after the burst"):format(seen, sent))
      io.stderr:write(("\n# follower saw the burst %.2f s after it was sent\n"):format(latency))
      assert.is_true(latency < 2, ("the follower saw the burst %.2f s after it was sent"):format(latency))
      -- still capturing: the follower got it from the flush, not from the end
      assert.is_nil(H.slurp(d .. "/cap.rc"))
      assert.matches("idle .*%(active%)", sh("stream_cat --list"))
      -- idle ticks: after another idle second the writer vouches for a time
      -- past the burst, close to now
      C.pc_sleep_ns(1300e6)
      local err = ffi.new("char[256]")
      local s = C.pc_store_open(d .. "/mnt/store0/capture", 0, err, 256)
      assert.is_not_nil(s, ffi.string(err))
      local info = ffi.new("pc_store_info")
      C.pc_store_info_get(s, info)
      C.pc_store_close(s)
      local pk = H.read(d .. "/f.pcap")
      local last = num.parse(pk[#pk].ts)
      assert.is_true(info.tick_ts > last, "no idle tick after the last packet")
      assert.is_true(C.pc_now_ns() - info.tick_ts < 2e9, "the idle tick is stale")
      -- SIGTERM ends the capture, and with it the follower
      local rc, log = stop_capture(d, sh, "cap", true)
      assert.are.equal(0, rc, log)
      for _ = 1, 100 do
         if H.slurp(d .. "/f.rc") then break end
         C.pc_sleep_ns(20e6)
      end
      assert.are.equal("0", (H.slurp(d .. "/f.rc") or "none"):match("%S+"), H.slurp(d .. "/f.log"))
      local m = metas(d).idle
      check_accounting(H.read(d .. "/burst.pcap"), sent, H.read(d .. "/f.pcap"), tonumber(m.kernel_drops))
   end)

   it("realtime push closes a time split on time from idle ticks, for filtered targets too", function()
      local d, sh = new_root()
      gen(sh, "burst.pcap", "-p finance -n 300 -s 0.2 -S 21")
      H.sh("mkdir -p " .. d .. "/opt/fmadio/etc")
      local f = io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w")
      f:write(([[return { Target = {
         { Desc = "all", Path = "%s/out/all/a-", Split = "--split-time 2e9", FileName = "--filename-epoch-sec" },
         { Desc = "some", Path = "%s/out/some/s-", Split = "--split-time 2e9", FileName = "--filename-epoch-sec",
           FilterBPF = "udp and dst port 10001" },
      } }]]):format(d, d))
      f:close()
      start_capture(d, sh, "cap", "--name rt --flush-idle 200e6 --filter '" .. FILTER .. "'")
      -- the supervisor in the background, following the active capture
      sh("( timeout 60 " .. H.root .. "/analytics/push_pcap.lua > push.log 2>&1 & echo $! > push.pid ) >/dev/null 2>&1")
      started[#started + 1] = { pid = d .. "/push.pid", rc = d .. "/push.none" }
      C.pc_sleep_ns(1.5e9)
      local sent = replay(sh, "burst.pcap")
      -- no more traffic: the writer's idle ticks must close the burst's split
      local closed
      for _ = 1, 100 do
         local files = H.ls(d .. "/out/all")
         if #files > 0 and not files[1]:match("pending$") then closed = files[1]; break end
         C.pc_sleep_ns(100e6)
      end
      assert.is_not_nil(closed, "no split closed: " .. (H.slurp(d .. "/mnt/store0/log/push_all.cur") or ""))
      assert.are.equal(sent, #H.read(d .. "/out/all/" .. closed))
      -- the filtered target's split closes on time as well
      local some
      for _ = 1, 50 do
         some = H.ls(d .. "/out/some")
         if #some > 0 and not some[1]:match("pending$") then break end
         C.pc_sleep_ns(100e6)
      end
      assert.is_true(#some > 0 and not some[1]:match("pending$"), "the filtered target's split did not close")
      local want = H.sh(("tcpdump -r %s/burst.pcap --count 'udp and dst port 10001' 2>/dev/null"):format(d))
      assert.are.equal(tonumber(want:match("(%d+) packets")), #H.read(d .. "/out/some/" .. some[1]))
      -- idle periods make no empty files
      assert.are.equal(1, #H.ls(d .. "/out/all"))
      sh("kill -TERM $(cat push.pid)")
      stop_capture(d, sh, "cap", true)
      assert.matches("push %[all +: stream_cat:true split:true%]", H.slurp(d .. "/push.log"))
   end)

   it("stops after --count packets and after --duration", function()
      local d, sh = new_root()
      gen(sh, "x.pcap", "-p finance -n 3000 -S 2")
      start_capture(d, sh, "cap", "--name counted --count 1000 --filter '" .. FILTER .. "'")
      replay(sh, "x.pcap", "--pps 20000")
      local rc, log = stop_capture(d, sh, "cap", false)
      assert.are.equal(0, rc, log)
      assert.matches("stored 1000.*stopped by count", log)
      local m = metas(d).counted
      assert.are.equal("1000", m.packets)
      assert.are.equal("1", m.closed)
      local t0 = C.pc_mono_ns()
      local out
      out, rc = sh("stream_capture --interface " .. IF .. " --name timed --duration 700ms")
      local took = tonumber(C.pc_mono_ns() - t0) / 1e9
      assert.are.equal(0, rc, out)
      assert.matches("stopped by duration", out)
      assert.is_true(took >= 0.7 and took < 3, ("--duration 700ms took %.2f s"):format(took))
   end)

   it("rolls to a new capture named by the roll time, shifted by Scheduler.TimeOffset, losing nothing", function()
      local d, sh = new_root()
      gen(sh, "x.pcap", "-p finance -n 3000 -S 3")
      must(("mkdir -p %s/opt/fmadio/etc && echo 'Scheduler = { TimeOffset = 250e6 }' > %s/opt/fmadio/etc/time.lua")
         :format(d, d))
      start_capture(d, sh, "cap", "--name first --roll-period 1s --filter '" .. FILTER .. "'")
      local sent = replay(sh, "x.pcap", "--pps 1500") -- 2 s: two or three rolls
      C.pc_sleep_ns(200e6)
      local rc, log = stop_capture(d, sh, "cap", true)
      assert.are.equal(0, rc, log)
      local rolls = 0
      for at in log:gmatch("roll at %d+%-%d+%-%d+ %d+:%d+:%d+%.(%d+)") do
         rolls = rolls + 1
         assert.are.equal("250", at, "roll not shifted by the 250 ms TimeOffset: " .. log)
      end
      assert.is_true(rolls >= 2, "fewer than 2 rolls: " .. log)
      -- every capture closed; all but the first named _YYYYMMDD_HHMMSS
      -- (a sub-minute period); together they hold what was sent
      local got, drops, caps = {}, 0, 0
      for name, m in pairs(metas(d)) do
         caps = caps + 1
         assert.are.equal("1", m.closed, name)
         assert.is_true(name == "first" or name:match("^capture_%d%d%d%d%d%d%d%d_%d%d%d%d%d%d$") ~= nil, name)
         drops = drops + tonumber(m.kernel_drops)
         local out
         out, rc = sh(("stream_cat %s > %s.pcap"):format(name, name))
         assert.are.equal(0, rc, out)
         local pk = H.read(("%s/%s.pcap"):format(d, name))
         -- a rolled capture holds only packets from its roll time (the
         -- time in its name, plus the offset) to the next roll
         if name ~= "first" then
            local hh, mm, ss = name:match("_(%d%d)(%d%d)(%d%d)$")
            local start = num.i64((tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)) * 1e9 + 250e6)
            local day = num.i64(86400e9)
            for _, p in ipairs(pk) do
               local into = ((num.parse(p.ts) % day) - start + day) % day
               assert.is_true(into < 1e9, ("%s holds a packet at %s, outside its second"):format(name, p.ts))
            end
         end
         for _, p in ipairs(pk) do got[#got + 1] = p end
      end
      assert.are.equal(rolls + 1, caps)
      check_accounting(H.read(d .. "/x.pcap"), sent, got, drops)
   end)
end)
