-- pushcap.sink: where a split's bytes go (pcap_split's output modes).
--
-- A sink turns "a split named N" into a chain of processes whose stdin
-- receives the pcap bytes: the optional --pipe-cmd, then the transport
-- (a file, rclone rcat, curl -T -, ssh cat).  Every split is written under
-- N.pending and renamed to N only when complete.  Children are started
-- from argv; the user's own strings (pipe command, curl arguments, ssh
-- options) run through sh -c with the file names passed as "$1"...
--
-- A pipe command that pushcap.compress recognises (gzip, pigz, lz4, zstd
-- command lines) is not started as a process: the sink carries its spec in
-- s.comp, the split engine compresses in-process (runtime/compress.c) and
-- the file, or the uploader's stdin, gets the compressed bytes.  The
-- pipe_external option (pcap_split --pipe-external, a push target's
-- Compress = "external") or M.force_external() keeps the command a process.
local C = require("pushcap.ffi")
local ffi = require("ffi")
local proc = require("pushcap.proc")
local paths = require("pushcap.paths")
local compress = require("pushcap.compress")
local curlopts = require("pushcap.curlopts")

local M = {}

local function dirname(p) return p:match("^(.*)/[^/]*$") end

-- The first stage as the [...] log line shows it.
local function first(self)
   if not self.pipe_cmd then return "cat" end
   return self.comp and (self.pipe_cmd .. " (in-process)") or self.pipe_cmd
end

-- ---- transports: each returns argv (or nil for a local file) ------------
local modes = {}

modes.file = {
   describe = function(_, name) return "FILE:" .. name end,
   upload = function() return nil end,
   prepare = function(_, path)
      local dir = dirname(path)
      if dir and dir ~= "" then
         local rc = C.pc_mkdirs(dir, 493)
         if rc < 0 then return nil, ("cannot create directory %s: %s"):format(dir, proc.errstr(rc)) end
      end
      return true
   end,
   rename = function(_, from, to)
      local rc = C.pc_rename(from, to)
      if rc < 0 then return nil, ("rename %s -> %s: %s"):format(from, to, proc.errstr(rc)) end
      return true
   end,
   write_cmd = function(self, pending) return ("%s > '%s'"):format(first(self), pending) end,
}

modes.null = {
   describe = function() return "NULL:" end,
   upload = function() return nil end,
   prepare = function() return true end,
   rename = function() return true end,
   write_cmd = function(self) return first(self) .. " > /dev/null" end,
   null = true,
}

-- rclone's own retries (10 low-level retries, each up to 10 more, with its
-- pacer's sleeps) keep an rcat to a dead server going for minutes while the
-- split engine waits on the pipe.  pushcap re-sends failed splits itself
-- (pcap_split --retry, push's delivery queue), so rclone only rides out a
-- brief glitch: 3 low-level retries fail a dead server in about 3 s.
local RCLONE_RETRIES = "--low-level-retries=3"

-- An object store shows an object only once its upload is complete, so
-- there a split is uploaded under its final name: a .pending object, and
-- the server-side copy and delete that `rclone moveto` is on an object
-- store, would double each split's work (and its cost, and announce the
-- object twice).  The remote's type comes from rclone.conf or rclone's
-- RCLONE_CONFIG_<NAME>_TYPE; anything else (a file system, sftp, webdav,
-- a wrapping remote, an unreadable config) keeps .pending and moveto.
local OBJECT_STORES = { s3 = true, ["google cloud storage"] = true, gcs = true, azureblob = true, b2 = true,
                        swift = true, oracleobjectstorage = true, qingstor = true }

function M.rclone_remote_type(remote)
   local env = os.getenv(("RCLONE_CONFIG_%s_TYPE"):format(remote:upper():gsub("%-", "_")))
   if env and env ~= "" then return env end
   local f = io.open(paths.rclone_conf)
   if not f then return nil end
   local section, rtype
   for line in f:lines() do
      local name = line:match("^%s*%[(.-)%]%s*$")
      if name then
         section = name
      elseif section == remote then
         rtype = rtype or line:match("^%s*type%s*=%s*(.-)%s*$")
      end
   end
   f:close()
   return rtype
end

local function rclone_atomic(self, name)
   if self.rclone_pending then return false end -- asked for the appliance's way everywhere
   local remote = name:match("^([%w_.%-][%w_. %-]*):")
   if not remote then return false end
   self.atomic_cache = self.atomic_cache or {}
   if self.atomic_cache[remote] == nil then
      self.atomic_cache[remote] = OBJECT_STORES[(M.rclone_remote_type(remote) or ""):lower()] == true
   end
   return self.atomic_cache[remote]
end

modes.rclone = {
   describe = function(_, name) return "RCLONE:" .. name end,
   target = function(self, pending)
      return rclone_atomic(self, pending) and (pending:gsub("%.pending$", "")) or pending
   end,
   upload = function(self, pending)
      return { "rclone", "--config=" .. paths.rclone_conf, "--ignore-checksum", RCLONE_RETRIES, "rcat",
               self:target(pending) }
   end,
   prepare = function() return true end,
   rename = function(self, from, to)
      if rclone_atomic(self, from) then return true end -- uploaded under its final name
      local argv = { "rclone", "--config=" .. paths.rclone_conf, "moveto", from, to, RCLONE_RETRIES }
      local rc = proc.run(argv)
      if rc ~= 0 then return nil, ("rclone moveto %s %s exited %d"):format(from, to, rc) end
      return true, table.concat(argv, " ")
   end,
   write_cmd = function(self, pending)
      return ("%s | rclone --config=%s --ignore-checksum %s rcat %s"):format(first(self), paths.rclone_conf,
         RCLONE_RETRIES, self:target(pending))
   end,
}

-- curl: the URL is split at its last '/' into a directory and a name prefix.
local function ftp_like(url) return url:match("^ftps?://") ~= nil end

-- With arguments pushcap.curlopts can map, the upload runs in this process
-- through libcurl (runtime/curl_put.c): s.curl_opts holds the option lines.
-- Otherwise the curl command runs per split, as before.
local function hide_url_user(url) return (url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1***@")) end

-- Any text (an error message, a log line) with the user and password of
-- every URL in it masked: ftp://user:secret@host/ -> ftp://***@host/.
function M.mask_text(s)
   return (tostring(s):gsub("(%a[%w+.-]*://)[^/@%s]*@", "%1***@"))
end

modes.curl = {
   describe = function(self, name) return "CURL:" .. hide_url_user(self.url_dir) .. name end,
   -- without a rename (http PUT, file://) the upload goes to the final name
   target = function(self, pending)
      return self.can_rename and pending or (pending:gsub("%.pending$", ""))
   end,
   upload = function(self, pending)
      return proc.sh_argv("curl -s -S --fail -T - " .. self.curl_args, { self.url_dir .. self:target(pending) })
   end,
   prepare = function() return true end,
   rename = function(self, from, to)
      if not self.can_rename then return true end -- http(s) PUT went straight to the final name
      local sftp = self.url_dir:match("^sftp://") ~= nil
      if self.curl_opts then
         local ebuf = ffi.new("char[1024]")
         if C.pc_curl_rename(self.url_dir, from, to, self.curl_opts, ebuf, 1024) < 0 then
            return nil, ("curl rename %s -> %s: %s"):format(from, to, ffi.string(ebuf))
         end
         return true, ("libcurl %s %s %s"):format(curlopts.mask(self.curl_args), hide_url_user(self.url_dir),
            sftp and ("rename " .. from .. " " .. to) or ("RNFR " .. from .. " RNTO " .. to))
      end
      local quote
      if sftp then
         local dir = self.url_dir:match("^sftp://[^/]*(/.*)$") or "/"
         quote = { "-Q", "-rename " .. dir .. from .. " " .. dir .. to }
      else
         quote = { "-Q", "-RNFR " .. from, "-Q", "-RNTO " .. to }
      end
      local args = { self.url_dir }
      for _, q in ipairs(quote) do args[#args + 1] = q end
      local devnull = C.pc_open_write("/dev/null")
      local rc = proc.run(proc.sh_argv("curl -s -S --fail " .. self.curl_args, args), devnull)
      C.pc_close(devnull)
      if rc ~= 0 then return nil, ("curl rename %s -> %s exited %d"):format(from, to, rc) end
      return true, ("curl -s %s %s %s"):format(curlopts.mask(self.curl_args), hide_url_user(self.url_dir),
         table.concat(quote, " "))
   end,
   write_cmd = function(self, pending)
      local url = hide_url_user(self.url_dir) .. self:target(pending)
      if self.curl_opts then
         return ("%s | curl -T - %s \"%s\" (libcurl)"):format(first(self), curlopts.mask(self.curl_args), url)
      end
      local note = ""
      if not self.fallback_noted then
         -- said once: why this target runs the curl command
         self.fallback_noted = true
         note = " (external curl: " .. self.curl_fallback .. ")"
      end
      return ("%s | curl -s -T - %s \"%s\"%s"):format(first(self), curlopts.mask(self.curl_args), url, note)
   end,
}

modes.ssh = {
   describe = function(self, name) return "SSH:" .. self.ssh_host .. ":" .. self.ssh_dir .. name end,
   upload = function(self, pending)
      -- the directory is made as in File mode: a missing one is no lost split
      local remote = "cat > " .. proc.quote(self.ssh_dir .. pending)
      if self.ssh_dir ~= "" then remote = "mkdir -p " .. proc.quote(self.ssh_dir) .. " && " .. remote end
      return proc.sh_argv("ssh " .. self.ssh_opts .. ' "$1" "$2"', { self.ssh_host, remote }, true)
   end,
   prepare = function() return true end,
   rename = function(self, from, to)
      local remote = "mv " .. proc.quote(self.ssh_dir .. from) .. " " .. proc.quote(self.ssh_dir .. to)
      local rc = proc.run(proc.sh_argv("ssh -T " .. self.ssh_opts .. ' "$1" "$2"', { self.ssh_host, remote }, true))
      if rc ~= 0 then return nil, ("ssh %s %s exited %d"):format(self.ssh_host, remote, rc) end
      return true, "ssh " .. self.ssh_host .. " " .. remote
   end,
   write_cmd = function(self, pending)
      return ("%s | ssh %s %s \"cat > %s%s\""):format(first(self), self.ssh_opts, self.ssh_host, self.ssh_dir, pending)
   end,
}

-- ---- construction -------------------------------------------------------
-- opts: mode ("file"|"null"|"rclone"|"curl"|"ssh"), pipe_cmd, curl_args,
-- curl_url, ssh_spec, rclone_pending (.pending and moveto on object stores
-- too), pipe_external (or compress = "external": run the pipe
-- command as a process even when it is recognised).  Returns the sink or
-- nil and a reason.
function M.new(opts)
   local m = modes[opts.mode]
   if not m then return nil, "unknown output mode " .. tostring(opts.mode) end
   local s = setmetatable({ mode = opts.mode }, { __index = m })
   if opts.pipe_cmd and opts.pipe_cmd ~= "" and opts.pipe_cmd ~= "cat" then s.pipe_cmd = opts.pipe_cmd end
   if s.pipe_cmd and not opts.pipe_external and opts.compress ~= "external" then
      s.comp = compress.recognise(s.pipe_cmd)
   end
   s.name_prefix = ""
   s.rclone_pending = opts.rclone_pending
   if opts.mode == "rclone" then
      -- rclone 1.60 refuses to start (LoadCustomCABundleError) when
      -- AWS_CA_BUNDLE is set, and cannot use it anyway: its own --ca-cert
      -- (in rclone.conf or RCLONE_CA_CERT) is the way to trust a private CA
      C.pc_unsetenv("AWS_CA_BUNDLE")
   end
   if opts.mode == "curl" then
      local url = opts.curl_url or ""
      local dir, prefix = url:match("^(.*/)([^/]*)$")
      if not dir then return nil, "--curl needs a URL with a '/' (e.g. ftp://host/dir/prefix), got '" .. url .. "'" end
      s.url_dir, s.name_prefix, s.curl_args = dir, prefix, opts.curl_args or ""
      s.can_rename = ftp_like(dir) or dir:match("^sftp://") ~= nil
      s.curl_opts, s.curl_fallback = curlopts.parse(s.curl_args)
   elseif opts.mode == "ssh" then
      -- "<ssh options> host:/remote/dir/prefix"
      local spec = opts.ssh_spec or ""
      local head, dir, prefix = spec:match("^(.*):(.*/)([^/]*)$")
      if not head then
         head, prefix = spec:match("^(.*):([^/]*)$")
         dir = ""
      end
      local sshopts, host = (head or ""):match("^(.-)%s*(%S+)$")
      if not host then return nil, "--ssh needs '[options] host:/path/prefix', got '" .. spec .. "'" end
      s.ssh_opts, s.ssh_host, s.ssh_dir, s.name_prefix = sshopts, host, dir, prefix
   end
   return s
end

-- The pipe command runs as a process from now on, recognised or not.
function M.force_external(s)
   s.comp = nil
end

-- True when a split passes through a process (pipe command or uploader),
-- whose failure only a raw spool copy can make good.  In-process
-- compression into a file has no process to fail.
function M.needs_spool(s)
   return (s.pipe_cmd ~= nil and not s.comp) or s.mode == "rclone" or s.mode == "curl" or s.mode == "ssh"
end

-- Starts the chain for one split.  in_fd is the spool file when re-sending,
-- nil for a fresh split (then the returned write_fd takes the bytes).  With
-- s.comp the pipe command is not part of the chain: the caller writes
-- compressed bytes (and must not hand a raw spool file in as in_fd).
-- Returns { pids = {...}, write_fd = fd|nil (-1: a direct upload, see
-- M.attach), upload = pc_upload|nil } or nil, err.
function M.start(s, pending, in_fd)
   local ok, err = s:prepare(pending)
   if not ok then return nil, err end
   local st = { pids = {} }
   local up, out
   if s.mode == "curl" and s.curl_opts and not in_fd and not (s.pipe_cmd and not s.comp) then
      -- in-process upload fed straight from the pcap writer's memory (M.attach)
      local ebuf = ffi.new("char[1024]")
      local h = C.pc_upload_start(s.url_dir .. s:target(pending), s.curl_opts, nil, ebuf, 1024)
      if h == nil then return nil, ffi.string(ebuf) end
      st.upload, st.direct, st.write_fd = h, true, -1
      return st
   elseif s.mode == "curl" and s.curl_opts then
      -- in-process upload behind a pipe command or a re-sent file: its pipe
      -- is the chain's final stdout
      local fdp, ebuf = ffi.new("int[1]"), ffi.new("char[1024]")
      local h = C.pc_upload_start(s.url_dir .. s:target(pending), s.curl_opts, fdp, ebuf, 1024)
      if h == nil then return nil, ffi.string(ebuf) end
      st.upload, out = h, fdp[0]
   else
      up = s:upload(pending)
   end
   -- the final stdout: the file itself, /dev/null, or inherited by the uploader
   if not up and not out then
      out = s.null and C.pc_open_write("/dev/null") or C.pc_open_write(pending)
      if out < 0 then return nil, ("cannot create %s: %s"):format(pending, proc.errstr(out)) end
   end
   local stages = {}
   if s.pipe_cmd and not s.comp then stages[#stages + 1] = proc.sh_argv(s.pipe_cmd) end
   if up then stages[#stages + 1] = up end
   -- a re-send into the in-process upload: cat feeds the spool file to its pipe
   if st.upload and in_fd and #stages == 0 then stages[1] = { "cat" } end
   if #stages == 0 then
      -- plain file: the writer writes straight into it, no process (and no
      -- spool, so never a re-send: see needs_spool)
      st.write_fd = out
      return st
   end
   local feed = in_fd
   local pfds = ffi.new("int[2]")
   if not feed then
      if C.pc_pipe(pfds) < 0 then return nil, "cannot create a pipe" end
      feed, st.write_fd = pfds[0], pfds[1]
   end
   for i, argv in ipairs(stages) do
      local stage_out, next_in
      if i == #stages then
         stage_out = out
      else
         if C.pc_pipe(pfds) < 0 then return nil, "cannot create a pipe" end
         next_in, stage_out = pfds[0], pfds[1]
      end
      local pid, perr = proc.spawn(argv, feed, stage_out)
      if feed ~= in_fd then C.pc_close(feed) end
      if stage_out and stage_out ~= out then C.pc_close(stage_out) end
      if not pid then
         if st.write_fd then C.pc_close(st.write_fd) end
         if out then C.pc_close(out) end
         for _, p in ipairs(st.pids) do proc.wait(p) end
         if st.upload then C.pc_upload_finish(st.upload, ffi.new("char[8]"), 8) end
         return nil, perr
      end
      st.pids[#st.pids + 1] = pid
      feed = next_in
   end
   if out then C.pc_close(out) end
   return st
end

-- Closes the write side and waits for the chain; returns true or nil, err.
-- Connects the pcap writer w to the chain st started: a direct upload
-- takes the writer's bytes itself (st.write_fd is then -1).
function M.attach(st, w)
   if st.direct then C.pc_writer_set_upload(w, st.upload) end
end

function M.finish(st)
   if st.write_fd then C.pc_close(st.write_fd); st.write_fd = nil end
   local bad
   for i, pid in ipairs(st.pids) do
      local rc = proc.wait(pid)
      if rc ~= 0 and not bad then bad = ("stage %d of the output pipeline exited %d"):format(i, rc) end
   end
   if st.upload then
      local ebuf = ffi.new("char[1024]")
      local rc = C.pc_upload_finish(st.upload, ebuf, 1024)
      st.upload = nil
      -- the upload's own reason beats a pipe command's EPIPE
      if rc < 0 then bad = "upload failed: " .. ffi.string(ebuf) end
   end
   if bad then return nil, bad end
   return true
end

return M
