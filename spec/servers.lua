-- Real servers on 127.0.0.1 for the specs, shared by ftp_spec,
-- rclone_spec and delivery_spec: vsftpd with a user made for the run,
-- s3rver (installed by `make deps` into spec/s3server), `rclone serve
-- webdav`, and a TCP proxy that can cut every connection (spec/cutproxy.js).
-- Every process runs under `timeout`, so a forgotten one cannot outlive the
-- run, and each can be stopped and started again on the same port, which
-- is how the delivery specs take a server away in the middle of a push.
local H = require("spec.helper")

local S = {}
S.NOCA = "env -u AWS_CA_BUNDLE"   -- rclone 1.60 fails with it set (docs/targets.md)
S.S3DIR = H.root .. "/spec/s3server"

function S.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A directory for a server that lives across the tests of a describe
-- (H.tmpdir's are removed after each test); S.rmdir removes it.
function S.tmpdir()
   return io.popen("mktemp -d /tmp/pushcap-srv.XXXXXX"):read("*l")
end
function S.rmdir(d)
   if d and d:match("^/tmp/pushcap%-srv%.") then H.sh("rm -rf " .. S.q(d)) end
end

-- Waits until `file` holds a match of pat (a Lua pattern with one
-- capture); returns the capture, or nil after secs seconds.
function S.wait_for(file, pat, secs)
   for _ = 1, secs * 10 do
      local s = H.slurp(file)
      local m = s and s:match(pat)
      if m then return m end
      H.sh("sleep 0.1")
   end
end

-- Polls fn() every 0.1 s until it is true; returns its value or nil after secs.
function S.until_true(fn, secs)
   for _ = 1, secs * 10 do
      local v = fn()
      if v then return v end
      H.sh("sleep 0.1")
   end
end

function S.port_open(port)
   local _, rc = H.sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' 2>/dev/null"):format(port))
   return rc == 0
end

-- Stops pid (TERM, then KILL after 5 s).
function S.stop(pid)
   if pid then H.sh(("kill %d 2>/dev/null; for i in $(seq 50); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; kill -9 %d 2>/dev/null")
      :format(pid, pid, pid)) end
end

-- Stops the process group that pid leads (`timeout` makes one for the
-- command it runs): the server and every session process it forked.
function S.stop_group(pid)
   if pid then H.sh(("kill -KILL -%d 2>/dev/null; for i in $(seq 50); do kill -0 -%d 2>/dev/null || break; sleep 0.1; done")
      :format(pid, pid)) end
end

-- Runs cmd in the background under timeout; returns timeout's pid.
local function background(limit, cmd, log)
   local out = H.sh(("timeout %d %s > %s 2>&1 & echo PID=$!"):format(limit, cmd, log))
   return tonumber(out:match("PID=(%d+)"))
end

-- ---- vsftpd -------------------------------------------------------------------------
-- A local user with a random name and password, for one spec file.
function S.ftp_user()
   math.randomseed(os.time() + math.floor(os.clock() * 1e6))
   local u = { user = ("pcftp%04d"):format(math.random(0, 9999)), pass = "Pw" .. math.random(100000, 999999) .. "x" }
   return u
end

-- vsftpd on 127.0.0.1 in directory d (its config, log and pid file),
-- serving o.root (default d/ftp) as the home of o.user (from S.ftp_user,
-- created here).  Returns an object: port, user, pass, root, stop(),
-- start() (same port), teardown() (stop, remove the user).
function S.vsftpd(d, o)
   o = o or {}
   local u = o.user or S.ftp_user()
   local f = {
      d = d, user = u.user, pass = u.pass, root = o.root or (d .. "/ftp"),
      port = 21000 + math.random(0, 8999), pasv = 40000 + math.random(0, 199) * 100,
      limit = o.limit or 120,
   }
   H.sh(("chmod 755 %s && mkdir -p %s %s/empty && chmod 755 %s/empty"):format(d, f.root, d, d))
   local out, rc = H.sh(("useradd -M -s /bin/bash -d %s %s && echo '%s:%s' | chpasswd && chown %s %s")
      :format(f.root, f.user, f.user, f.pass, f.user, f.root))
   assert(rc == 0, out)
   local cf = assert(io.open(d .. "/vsftpd.conf", "w"))
   cf:write(("listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port=%d\nbackground=NO\n"
      .. "anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n"
      .. "chroot_local_user=YES\nallow_writeable_chroot=YES\nlocal_root=%s\n"
      .. "pasv_enable=YES\npasv_min_port=%d\npasv_max_port=%d\nsecure_chroot_dir=%s/empty\n"
      .. "pam_service_name=vsftpd\nseccomp_sandbox=NO\nisolate_network=NO\nisolate=NO\n"
      .. "xferlog_enable=YES\nvsftpd_log_file=%s/vsftpd.log\nuserlist_enable=NO\ndelay_failed_login=0\n")
      :format(f.port, f.root, f.pasv, f.pasv + 99, d, d))
   cf:close()

   function f.start()
      f.pid = background(f.limit, "/usr/sbin/vsftpd " .. d .. "/vsftpd.conf", d .. "/vsftpd.out")
      if not S.until_true(function() return S.port_open(f.port) end, 10) then
         error("vsftpd did not start: " .. tostring(H.slurp(d .. "/vsftpd.out")))
      end
   end
   -- the listener and every session: uploads in flight are cut.  Each
   -- session leads a session of its own (setsid), so it is stopped by its
   -- group, found as a child of the listener.
   function f.stop()
      if f.pid then
         H.sh(("for l in $(ps -o pid= --ppid %d); do for s in $(ps -o pid= --ppid $l); do kill -KILL -$s $s 2>/dev/null; done; done")
            :format(f.pid))
      end
      S.stop_group(f.pid)
      f.pid = nil
   end
   function f.teardown()
      f.stop()
      H.sh("userdel " .. f.user .. " 2>/dev/null")
   end
   f.start()
   return f
end

-- ---- sshd ------------------------------------------------------------------------------
-- sshd on 127.0.0.1 with a host key and a user key (d/userkey, for root)
-- made in d.  Returns an object: port, key, stop() (the listener and every
-- session), start() (same port).
function S.sshd(d)
   local h = { d = d, key = d .. "/userkey", port = 20000 + math.random(0, 9999) }
   H.sh(("mkdir -p /run/sshd && cd %s && ssh-keygen -q -t ed25519 -N '' -f hostkey && ssh-keygen -q -t ed25519 -N '' -f userkey "
      .. "&& cp userkey.pub authorized_keys"):format(d))
   local f = assert(io.open(d .. "/sshd_config", "w"))
   f:write(("Port %d\nListenAddress 127.0.0.1\nHostKey %s/hostkey\nAuthorizedKeysFile %s/authorized_keys\n"
      .. "PidFile %s/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
      .. "PasswordAuthentication no\nSubsystem sftp internal-sftp\n"):format(h.port, d, d, d))
   f:close()
   function h.start()
      os.remove(d .. "/sshd.pid")
      local out, rc = H.sh(("/usr/sbin/sshd -f %s/sshd_config -E %s/sshd.log"):format(d, d))
      assert(rc == 0, out)
      -- sshd forks into the background once it listens
      h.pid = tonumber(S.until_true(function() return (H.slurp(d .. "/sshd.pid") or ""):match("%d+") end, 5) or "")
      assert(h.pid, "sshd did not start: " .. (H.slurp(d .. "/sshd.log") or ""))
   end
   function h.stop()
      if not h.pid then return end
      -- each session is a child of the listener
      H.sh(("for s in $(ps -o pid= --ppid %d); do kill -KILL $s; done; kill -KILL %d"):format(h.pid, h.pid))
      S.until_true(function() return not S.port_open(h.port) end, 5)
      h.pid = nil
   end
   -- ssh options for a client: this key, no host key prompts
   h.opts = ("-p %d -i %s -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
      :format(h.port, h.key)
   h.start()
   return h
end

-- ---- servers that print their port -------------------------------------------------
-- A server on 127.0.0.1 serving dir, started by command(port) (port 0: the
-- kernel picks) and logging the port it took in a line matching ready.  The
-- first start picks the port; a start after stop() takes the same again.
local function port_server(name, dir, log, limit, command, ready)
   local sv = { dir = dir, log = log, limit = limit or 600 }
   H.sh("mkdir -p " .. S.q(dir))
   function sv.start()
      os.remove(sv.log)
      sv.pid = background(sv.limit, command(sv.port or 0), sv.log)
      local port = tonumber(S.wait_for(sv.log, ready, 15) or "")
      assert(port, name .. " did not start: " .. (H.slurp(sv.log) or ""))
      sv.port = port
   end
   function sv.stop()
      S.stop(sv.pid)
      sv.pid = nil
   end
   sv.start()
   return sv
end

-- rclone serve webdav of dir.
function S.webdav(dir, logdir, limit)
   return port_server("rclone serve webdav", dir, logdir .. "/dav.log", limit, function(port)
      return ("%s rclone --config=/dev/null serve webdav %s --addr 127.0.0.1:%d"):format(S.NOCA, S.q(dir), port)
   end, "started on http://127%.0%.0%.1:(%d+)/")
end

-- An S3 server (s3rver) storing under dir, with bucket made up front.
function S.s3rver(dir, bucket, logdir, limit)
   assert(H.slurp(S.S3DIR .. "/node_modules/s3rver/package.json"),
      "s3rver is not installed: run `make deps` (npm install in spec/s3server)")
   return port_server("s3rver", dir, logdir .. "/s3.log", limit, function(port)
      return ("node %s/start.js %s %s %d"):format(S.S3DIR, S.q(dir), bucket, port)
   end, "READY (%d+)")
end

-- The rclone.conf of a pushcap root: remotes s3 (an s3rver port) and dav
-- (a webdav port), either may be nil.  Returns its path.
function S.rclone_conf(root, s3_port, dav_port)
   H.sh("mkdir -p " .. root .. "/opt/fmadio/etc")
   local path = root .. "/opt/fmadio/etc/rclone.conf"
   local f = assert(io.open(path, "w"))
   if s3_port then
      f:write(("[s3]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:%d\naccess_key_id = S3RVER\n"
         .. "secret_access_key = S3RVER\nforce_path_style = true\n\n"):format(s3_port))
   end
   if dav_port then
      f:write(("[dav]\ntype = webdav\nurl = http://127.0.0.1:%d/\nvendor = other\n\n"):format(dav_port))
   end
   f:close()
   return path
end

-- ---- a proxy that cuts connections -----------------------------------------------------
-- 127.0.0.1:<port> -> 127.0.0.1:<target>.  cut(): every open connection is
-- destroyed and new ones are closed as they arrive, until restore().
function S.cutproxy(target, logdir, limit)
   local p = { control = logdir .. "/proxy.cut", log = logdir .. "/proxy.log" }
   os.remove(p.control)
   p.pid = background(limit or 300, ("node %s/spec/cutproxy.js %d %s"):format(H.root, target, S.q(p.control)), p.log)
   p.port = tonumber(S.wait_for(p.log, "READY (%d+)", 10) or "")
   assert(p.port, "the proxy did not start: " .. (H.slurp(p.log) or ""))
   p.cuts = 0
   function p.cut()
      p.cuts = p.cuts + 1
      io.open(p.control, "w"):close()
      -- the proxy polls the file every 20 ms and says when it has cut
      assert(S.wait_for(p.log, "(CUT " .. p.cuts .. ")", 5), "the proxy did not cut: " .. (H.slurp(p.log) or ""))
   end
   function p.restore()
      os.remove(p.control)
      assert(S.wait_for(p.log, "(RESTORED " .. p.cuts .. ")", 5),
         "the proxy did not restore: " .. (H.slurp(p.log) or ""))
   end
   function p.stop() S.stop(p.pid) end
   return p
end

return S
