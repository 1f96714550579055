-- Delivery without loss (issue #5 items 4 and 6): push_pcap.lua pushes a
-- stored capture to a real server on 127.0.0.1 while the test breaks the
-- server: stops it in the middle of the push and starts it again, cuts
-- every connection through a proxy for a while, fills its disk and frees
-- it.  Splits that fail wait in the target's delivery queue and are re-sent
-- in the background while later splits flow.  Afterwards the remote must
-- hold exactly the files a File target of the same push wrote (same
-- names, same bytes), nothing else (no .pending), and the worker's log
-- must say what was pending and why, without the password.
local H = require("spec.helper")
local S = require("spec.servers")
local redeliver = require("pushcap.redeliver")

local SPLIT = 'Split = "--split-time 10e9", FileName = "--filename-tstr-HHMMSS", '
   .. 'PipeCmd = "zstd -c -1", FileSuffix = ".pcap.zst"'
-- the remote target: slowed by a new-split hook so that the faults land in
-- the middle of its push; retries start at 0.2 s
local SLOW = 'ScriptNew = "sleep 0.25", SplitCmd = "--retry-delay 2e8"'

-- A pushcap root in a fresh directory with a capture "cap" of generated
-- traffic (200 s: 20 splits of 10 s).  Returns d and a shell runner.
local function make_root(gen)
   local d = H.tmpdir()
   local env = ("export PUSHCAP_ROOT=%s PATH=%s:%s:%s/analytics:$PATH TZ=UTC &&"):format(d, H.build, H.bin, H.root)
   local function sh(cmd) return H.sh(("cd %s && %s %s"):format(d, env, cmd)) end
   local out, rc = H.sh(("%s/pcapgen %s -o %s/in.pcap"):format(H.build, gen or "-p isp -n 12000 -s 200 -S 4", d))
   assert.are.equal(0, rc, out)
   out, rc = sh("stream_capture --store-size 64M --chunk-size 64K --import in.pcap --name cap")
   assert.are.equal(0, rc, out)
   H.sh("mkdir -p " .. d .. "/opt/fmadio/etc")
   return d, sh
end

-- The push config: a File reference target and the remote target.
local function write_config(d, remote)
   local f = assert(io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w"))
   f:write(([[
local Config = { Target = {} }
table.insert(Config.Target, { Desc = "ref", Mode = "File", Path = "%s/out/ref/all-", %s })
table.insert(Config.Target, { %s, %s, %s })
return Config
]]):format(d, SPLIT, remote, SPLIT, SLOW))
   f:close()
end

-- Starts the supervisor offline in the background; sup.pid holds the pid
-- of its `timeout` (which passes a TERM on), sup.rc its exit code.  Returns
-- a function giving that code once it has ended.
local function push_background(d, sh)
   sh("rm -f sup.rc sup.pid; ( timeout 110 push_pcap.lua --offline cap > sup.log 2>&1 & echo $! > sup.pid; "
      .. "wait $!; echo $? > sup.rc ) > /dev/null 2>&1 & true")
   assert(S.until_true(function() return H.slurp(d .. "/sup.pid") end, 5), "push did not start")
   return function()
      local rc = H.slurp(d .. "/sup.rc")
      return rc and tonumber(rc:match("%d+"))
   end
end

local function wait_done(d, done, secs)
   local rc = S.until_true(done, secs or 90)
   assert(rc, "push did not finish in time:\n" .. (H.slurp(d .. "/sup.log") or ""))
   return rc
end

-- the worker logs of target desc (a restarted worker may start a new file)
local function worker_log(d, desc)
   return H.sh(("cat %s/mnt/store0/log/push_%s_*"):format(d, desc))
end

local function status_of(d, desc)
   return redeliver.status_line(("%s/mnt/store0/push/push_pcap/%s.status"):format(d, desc))
end

-- Waits until the target's status file says at least n splits are pending.
local function wait_pending(d, desc, n, secs)
   local line = S.until_true(function()
      local l = status_of(d, desc)
      local k = l and tonumber(l:match("^(%d+) split"))
      return k and k >= n and l
   end, secs or 30)
   assert(line, ("never %d splits pending for %s; log:\n%s"):format(n, desc, worker_log(d, desc)))
   return line
end

-- dir (as the server stored it) holds exactly the reference files, byte
-- for byte, and nothing else.
local function same_as_ref(d, dir)
   local ref = H.ls(d .. "/out/ref")
   assert.is_true(#ref >= 15, "the reference has too few splits: " .. #ref)
   assert.are.same(ref, H.ls(dir))
   for _, n in ipairs(ref) do
      local want, got = H.slurp(d .. "/out/ref/" .. n), H.slurp(dir .. "/" .. n)
      assert.is_true(#want > 24 and got == want,
         ("%s/%s differs from the reference (%d bytes, want %d)"):format(dir, n, got and #got or -1, #want))
   end
end

-- Nothing left behind by the delivery queue.
local function queue_empty(d, desc)
   local qdir = ("%s/mnt/store0/spool/%s/queue/push_pcap"):format(d, desc)
   assert.are.same({}, H.ls(qdir))
   assert.is_nil(H.slurp(("%s/mnt/store0/push/push_pcap/%s.status"):format(d, desc)), "status file left")
end

local function started_pid(d, desc)
   local log = H.slurp(d .. "/sup.log") or ""
   return tonumber(log:match("push %[" .. desc .. " +: started pid (%d+)"))
end

describe("delivery without loss", function()
   after_each(H.cleanup)

   it("the queue outlives a stop, drops half-queued leftovers, keeps each split's final name, runs Post", function()
      local d, sh = make_root("-p isp -n 1500 -s 30 -S 7")
      local function config(dir)
         local f = assert(io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w"))
         -- a pipe command that fails (without reading) until the file "open" exists
         f:write(([[
local Config = { Target = {} }
table.insert(Config.Target, { Desc = "ref", Path = "%s/out/ref/all-", Split = "--split-time 10e9", FileName = "--filename-tstr-HHMMSS" })
table.insert(Config.Target, { Desc = "gate", Path = "%s/out/%s/all-", Split = "--split-time 10e9", FileName = "--filename-tstr-HHMMSS",
   PipeCmd = "sh -c 'test -e %s/open && exec cat'", SplitCmd = "--retry-delay 1e8", Post = "ls >> %s/post.log" })
return Config
]]):format(d, d, dir, d, d))
         f:close()
      end
      local function stop(done)
         H.sh("kill -TERM " .. H.slurp(d .. "/sup.pid"):match("%d+"))
         return wait_done(d, done, 30)
      end
      -- a data file without its .meta: a worker died while queueing it
      local qdir = d .. "/mnt/store0/spool/gate/queue/push_pcap"
      H.sh("mkdir -p " .. qdir .. " && echo junk > " .. qdir .. "/1700000000000000000-9.pcap")
      -- and one delivered, whose copy was still there when the worker died
      H.sh(("cd %s && echo sent > 1700000000000000000-8.pcap && echo name=x > 1700000000000000000-8.done"):format(qdir))
      config("a")
      local done = push_background(d, sh)
      wait_pending(d, "gate", 3)
      stop(done)
      assert.matches("removing [^\n]+/1700000000000000000%-9%.pcap: a split whose queueing did not finish", worker_log(d, "gate"))
      assert.matches("removing [^\n]+/1700000000000000000%-8%.pcap: delivered before the last stop", worker_log(d, "gate"))
      assert.are.equal(6, #H.ls(qdir))
      -- the target's Path changes before they go out: a queued split still
      -- goes to the final name its first attempt had, and Post runs for it
      config("b")
      H.sh("touch " .. d .. "/open")
      done = push_background(d, sh)
      assert.are.equal(0, wait_done(d, done))
      local ref = H.ls(d .. "/out/ref")
      assert.are.equal(3, #ref)
      assert.are.same(ref, H.ls(d .. "/out/a"))
      assert.are.same({}, H.ls(d .. "/out/b"))
      for _, n in ipairs(ref) do
         assert.is_true(H.slurp(d .. "/out/ref/" .. n) == H.slurp(d .. "/out/a/" .. n), n .. " differs")
         assert.is_truthy((H.slurp(d .. "/post.log") or ""):find(d .. "/out/a/" .. n, 1, true), "no Post for " .. n)
      end
      queue_empty(d, "gate")
   end)

   describe("to FTP (vsftpd)", function()
      local ftp, d0
      setup(function()
         d0 = S.tmpdir()
         ftp = S.vsftpd(d0)
      end)
      teardown(function()
         if ftp then ftp.teardown() end
         S.rmdir(d0)
      end)

      local function remote(sub)
         return ('Desc = "ftp", Mode = "CURL", Path = "ftp://127.0.0.1:%d/%s/all-", '
            .. 'CurlArgs = "-u %s:%s --ftp-create-dirs --connect-timeout 5"'):format(ftp.port, sub, ftp.user, ftp.pass)
      end

      -- The server is down from the start of the push until during() has
      -- seen the outage do its work; afterwards it holds exactly the
      -- reference files under sub, and the queue is empty.
      local function outage(d, sh, sub, during)
         ftp.stop()
         local done = push_background(d, sh)
         during()
         ftp.start()
         assert.are.equal(0, wait_done(d, done), H.slurp(d .. "/sup.log"))
         same_as_ref(d, ftp.root .. "/" .. sub)
         queue_empty(d, "ftp")
      end

      it("server stopped mid-push, worker killed, server back: every split delivered once, byte-identical", function()
         local d, sh = make_root()
         write_config(d, remote("stop"))
         local done = push_background(d, sh)
         -- a few splits reach the server, then it goes away mid-push
         S.until_true(function() return #H.ls(ftp.root .. "/stop") >= 3 end, 20)
         ftp.stop()
         local line = wait_pending(d, "ftp", 2)
         assert.matches("^%d+ splits pending delivery, oldest all%-[%d_]+%.pcap%.zst: .+; ", line)
         -- the worker dies; the supervisor restarts it and it finds its queue
         local wpid = started_pid(d, "ftp")
         assert.is_truthy(wpid)
         H.sh("kill -KILL " .. wpid)
         S.until_true(function() return worker_log(d, "ftp"):find("queued by an earlier run", 1, true) end, 20)
         H.sh("sleep 1")
         ftp.start()
         assert.are.equal(0, wait_done(d, done), H.slurp(d .. "/sup.log"))
         same_as_ref(d, ftp.root .. "/stop")
         queue_empty(d, "ftp")
         local log = worker_log(d, "ftp")
         assert.matches("exited 137, restart", H.slurp(d .. "/sup.log"))
         assert.matches("queued for re%-sending from [^\n]+: upload failed: curl %(7%)", log)
         -- no spool copy while splits flow: a failed one is made again from the store
         assert.matches("all%-[%d_]+%.pcap%.zst made again from the store for re%-sending %(%d+ packets%)", log)
         assert.matches("splits? pending delivery, oldest all%-[^\n]+; next attempt in [%d.]+ s", log)
         assert.matches("delivered from the queue", log)
         assert.matches("Resuming capture cap", log)
         assert.is_nil(log:find(ftp.pass, 1, true), "the password is in the log")
         assert.is_nil((H.slurp(d .. "/sup.log") or ""):find(ftp.pass, 1, true), "the password is in the log")
      end)

      it("a filtered target's failed splits are made again through the same decap and filter", function()
         local d, sh = make_root()
         local filt = 'FilterBPF = "net 192.168.1.0/24 and tcp"'
         local f = assert(io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w"))
         f:write(([[
local Config = { Target = {} }
table.insert(Config.Target, { Desc = "ref", Mode = "File", Path = "%s/out/ref/all-", %s, %s })
table.insert(Config.Target, { %s, %s, %s, %s })
return Config
]]):format(d, SPLIT, filt, remote("filtered"), SPLIT, SLOW, filt))
         f:close()
         outage(d, sh, "filtered", function() wait_pending(d, "ftp", 3) end)
         assert.matches("made again from the store for re%-sending", worker_log(d, "ftp"))
      end)

      it("stopped with splits pending: kept for the next run, never sent to a changed URL, shown, delivered", function()
         local d, sh = make_root("-p isp -n 4000 -s 60 -S 5")
         write_config(d, remote("later"))
         ftp.stop()
         local done = push_background(d, sh)
         -- every split queued (the reference target has them all by then)
         assert(S.until_true(function() return (H.slurp(d .. "/sup.log") or ""):match("push %[ref +: finished%]") end, 30),
            "the reference target did not finish")
         local ref = H.ls(d .. "/out/ref")
         assert.is_true(#ref >= 5)
         wait_pending(d, "ftp", #ref)
         -- stopped like an operator does
         H.sh("kill -TERM " .. H.slurp(d .. "/sup.pid"):match("%d+"))
         wait_done(d, done, 30)
         local log = worker_log(d, "ftp")
         assert.matches("stopping with %d+ splits pending delivery; they stay queued in", log)
         assert.is_truthy(status_of(d, "ftp"))
         assert.are.same({}, H.ls(ftp.root .. "/later"))
         -- the target's URL changes meanwhile: the queue does not send its
         -- splits to the new directory, and says why
         write_config(d, remote("elsewhere"))
         ftp.start()
         done = push_background(d, sh)
         local why = S.until_true(function()
            local l = status_of(d, "ftp")
            return l and l:find("the target now delivers to", 1, true) and l
         end, 20)
         assert.is_truthy(why, worker_log(d, "ftp"))
         assert.matches("but this split was made for CURL:ftp://127%.0%.0%.1:%d+/later/all%-", why)
         H.sh("kill -TERM " .. H.slurp(d .. "/sup.pid"):match("%d+"))
         wait_done(d, done, 30)
         assert.are.same({}, H.ls(ftp.root .. "/elsewhere"))
         ftp.stop()
         -- URL restored and started again: the supervisor shows what is
         -- pending at once, and the queue goes out when the server is back
         write_config(d, remote("later"))
         done = push_background(d, sh)
         local shown = S.until_true(function()
            return (H.slurp(d .. "/sup.log") or ""):match("push %[ftp +: (%d+ splits pending delivery, oldest [^\n]+)%]")
         end, 20)
         assert.is_truthy(shown, H.slurp(d .. "/sup.log"))
         ftp.start()
         assert.are.equal(0, wait_done(d, done))
         assert.are.same(ref, H.ls(ftp.root .. "/later"))
         for _, n in ipairs(ref) do
            assert.is_true(H.slurp(d .. "/out/ref/" .. n) == H.slurp(ftp.root .. "/later/" .. n), n .. " differs")
         end
         queue_empty(d, "ftp")
         assert.matches("queued by an earlier run", worker_log(d, "ftp"))
         assert.is_nil(worker_log(d, "ftp"):find(ftp.pass, 1, true), "the password is in the log")
      end)

      it("remote down until the local spool disk is full: the worker waits, the queue drains it, nothing lost", function()
         local d, sh = make_root()
         write_config(d, remote("spoolfull"))
         -- the spool on a 2 MB tmpfs: about seven queued splits fill it
         local spool = d .. "/mnt/store0/spool"
         H.sh("mkdir -p " .. spool)
         local out, mrc = H.sh("mount -t tmpfs -o size=2m tmpfs " .. spool)
         assert(mrc == 0, "cannot mount a tmpfs (the specs run as root): " .. out)
         finally(function() H.sh("umount " .. spool) end)
         outage(d, sh, "spoolfull", function()
            assert(S.until_true(function() return worker_log(d, "ftp"):find("possibly out of disk space", 1, true) end, 40),
               "the spool never filled:\n" .. worker_log(d, "ftp"))
         end)
         assert.matches("delivered from the queue", worker_log(d, "ftp"))
      end)
   end)

   describe("to FTP on a full disk", function()
      local ftp, d0, mnt
      setup(function()
         d0 = S.tmpdir()
         mnt = d0 .. "/disk"
         H.sh("mkdir -p " .. mnt)
         local out, rc = H.sh("mount -t tmpfs -o size=3m tmpfs " .. mnt)
         assert(rc == 0, "cannot mount a tmpfs (the specs run as root): " .. out)
         ftp = S.vsftpd(d0, { root = mnt })
      end)
      teardown(function()
         if ftp then ftp.teardown() end
         if mnt then H.sh("umount " .. mnt) end
         S.rmdir(d0)
      end)

      it("a split that does not fit waits until space is freed, then everything is there", function()
         local d, sh = make_root("-p isp -n 6000 -s 200 -S 6")
         write_config(d, ('Desc = "full", Mode = "CURL", Path = "ftp://127.0.0.1:%d/up/all-", '
            .. 'CurlArgs = "-u %s:%s --ftp-create-dirs"'):format(ftp.port, ftp.user, ftp.pass))
         -- leave about 400 kB free: a few splits fit, then the disk is full
         H.sh(("dd if=/dev/zero of=%s/filler bs=1k count=%d 2>/dev/null"):format(mnt, 3 * 1024 - 400))
         local done = push_background(d, sh)
         local line = wait_pending(d, "full", 2)
         assert.is_truthy(#H.ls(mnt .. "/up") >= 1)
         H.sh("rm " .. mnt .. "/filler")
         assert.are.equal(0, wait_done(d, done), H.slurp(d .. "/sup.log"))
         same_as_ref(d, mnt .. "/up")
         queue_empty(d, "full")
         local log = worker_log(d, "full")
         assert.matches("upload failed: curl %(%d+%)[^\n]*4[05]%d", log)
         assert.matches("delivered from the queue", log)
         assert.is_truthy(line)
      end)
   end)

   describe("through rclone", function()
      local dir
      setup(function() dir = S.tmpdir() end)
      teardown(function() S.rmdir(dir) end)

      it("webdav stopped mid-push and started again: the remote holds every split, byte-identical", function()
         local dav = S.webdav(dir .. "/dav", dir, 120)
         local d, sh = make_root()
         S.rclone_conf(d, nil, dav.port)
         write_config(d, 'Desc = "dav", Mode = "RCLONE", Path = "dav:up/all-"')
         local done = push_background(d, sh)
         S.until_true(function() return #H.ls(dir .. "/dav/up") >= 3 end, 20)
         dav.stop()
         wait_pending(d, "dav", 2)
         dav.start()
         local rc = wait_done(d, done)
         dav.stop()
         assert.are.equal(0, rc, H.slurp(d .. "/sup.log"))
         same_as_ref(d, dir .. "/dav/up")
         queue_empty(d, "dav")
         local log = worker_log(d, "dav")
         assert.matches("queued for re%-sending from [^\n]+: stage %d of the output pipeline exited", log)
         assert.matches("delivered from the queue", log)
         assert.matches("Cmd %[rclone [^\n]+ moveto ", log)
      end)

      -- sshd stopped once the push has delivered a few splits, started
      -- again once two are queued; then everything must be there
      local function sshd_outage(sshd, d, sh, desc, remote)
         local done = push_background(d, sh)
         S.until_true(function() return #H.ls(remote) >= 3 end, 20)
         sshd.stop()
         wait_pending(d, desc, 2)
         sshd.start()
         local rc = wait_done(d, done)
         sshd.stop()
         assert.are.equal(0, rc, H.slurp(d .. "/sup.log"))
         same_as_ref(d, remote)
         queue_empty(d, desc)
         local log = worker_log(d, desc)
         assert.matches("delivered from the queue", log)
         return log
      end

      it("SSH (an sftp remote, sshd) stopped mid-push and started again: every split there, byte-identical", function()
         local sshd = S.sshd(dir)
         local d, sh = make_root()
         local f = assert(io.open(d .. "/opt/fmadio/etc/rclone.conf", "w"))
         f:write(("[ssh]\ntype = sftp\nhost = 127.0.0.1\nport = %d\nuser = root\nkey_file = %s\n"):format(sshd.port, sshd.key))
         f:close()
         local remote = dir .. "/remote"
         write_config(d, ('Desc = "ssh", Mode = "RCLONE", Path = "ssh:%s/all-"'):format(remote))
         sshd_outage(sshd, d, sh, "ssh", remote)
      end)

      it("Mode SSH: sshd stopped mid-push and started again: every split there, byte-identical", function()
         local sshd = S.sshd(dir)
         local d, sh = make_root()
         local remote = dir .. "/sshmode"
         write_config(d, ('Desc = "sshm", Mode = "SSH", Path = "root@127.0.0.1:%s/all-", SshArgs = %q')
            :format(remote, sshd.opts))
         local log = sshd_outage(sshd, d, sh, "sshm", remote)
         assert.matches("Cmd %[ssh root@127.0.0.1 mv ", log)
      end)

      it("S3 (s3rver) behind a proxy that cuts every connection for a while: nothing lost, nothing extra", function()
         local s3 = S.s3rver(dir .. "/s3", "cut", dir, 120)
         local proxy = S.cutproxy(s3.port, dir, 120)
         local d, sh = make_root()
         -- pushcap reaches the server through the proxy; the checks go direct
         S.rclone_conf(d, proxy.port, nil)
         local direct = S.rclone_conf(dir .. "/direct", s3.port, nil)
         write_config(d, 'Desc = "s3", Mode = "RCLONE", Path = "s3:cut/up/all-"')
         local done = push_background(d, sh)
         -- (the first split is up: objects go straight to their final names)
         S.until_true(function() return (H.slurp(d .. "/mnt/store0/log/push_s3.cur") or ""):find(": Finished", 1, true) end, 20)
         proxy.cut()
         wait_pending(d, "s3", 2)
         proxy.restore()
         local rc = wait_done(d, done)
         assert.are.equal(0, rc, H.slurp(d .. "/sup.log"))
         -- the bucket, listed and read straight from the server
         local out, rrc = H.sh(("%s timeout 60 rclone --config=%s lsf s3:cut/up"):format(S.NOCA, direct))
         assert.are.equal(0, rrc, out)
         local names = {}
         for l in out:gmatch("[^\n]+") do names[#names + 1] = l end
         table.sort(names)
         assert.are.same(H.ls(d .. "/out/ref"), names)
         for _, n in ipairs(names) do
            local data = H.sh2(("%s timeout 60 rclone --config=%s cat s3:cut/up/%s"):format(S.NOCA, direct, n))
            assert.is_true(data == H.slurp(d .. "/out/ref/" .. n), n .. " differs from the reference")
         end
         queue_empty(d, "s3")
         assert.matches("delivered from the queue", worker_log(d, "s3"))
         proxy.stop()
         s3.stop()
      end)
   end)
end)
