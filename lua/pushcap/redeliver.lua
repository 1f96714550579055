-- pushcap.redeliver: push's delivery queue, one per target.
--
-- A split whose upload or rename failed is not lost and does not hold up
-- the splits after it: the split engine hands it here (cfg.queue) and the
-- worker carries on.  How, and why this way:
--
-- * Durable first.  The split's raw spool copy is moved into the queue
--   directory as <id>.pcap, then <id>.meta (its final name, where it was
--   going, why it failed) is written to a .tmp and renamed, so an entry
--   exists whole or not at all; data, .meta and directory are fsynced, so
--   it survives a power cut too.  Only then does the worker save its
--   position past the split.  A worker that dies before that makes the
--   split again from the store; one that dies after finds the entry here
--   when it starts (scan).
-- * Re-sends run in a helper process, one at a time per target
--   (`fmadiolua -e "require('pushcap.redeliver').attempt_main(...)"`).  An
--   upload blocks: in compression, in writing to a slow pipe, in libcurl
--   waiting for a server, in rclone's moveto.  In the worker that would stop
--   the live pipeline; in a helper it costs the worker one waitpid(WNOHANG)
--   between chunks (tick).  The helper sends exactly what the first attempt
--   would have (split.send_spool: the same in-process compressor, or the
--   pipe command) to the same <name>.pending, which overwrites whatever a
--   failed attempt left there, and renames it: no duplicate, no stray
--   .pending.
-- * Backoff per target, not per split: when the server is down every split
--   fails, and what matters is how often the target knocks.  Exponential
--   from the target's retry delay (pcap_split's --retry-delay, 1 s by
--   default), capped at 60 s, with jitter so that many targets do not
--   retry in step.  It never gives up: the operator stops the worker.  A
--   live split delivered (nudge) means the remote is back: the queue is
--   tried at once.
-- * Entries take turns: a failed one goes to the back, so one split that
--   cannot be sent (its destination changed, say) does not hold up others.
-- * What is pending and why goes to the log after every change, and into a
--   small status file next to the worker's position file, which the
--   supervisor shows with its status lines (status_line).
-- Credentials never reach the log or the files: reasons are masked
-- (sink.mask_text) and the helper reloads the config instead of being
-- handed the target's settings.
local ffi = require("ffi")
local C = require("pushcap.ffi")
local num = require("pushcap.num")
local paths = require("pushcap.paths")
local proc = require("pushcap.proc")
local sinkmod = require("pushcap.sink")

local M = {}
local Q = {}
Q.__index = Q

M.MAX_DELAY_NS = 60e9
local STOP_GRACE_NS = 3e9

local mask = sinkmod.mask_text

-- ---- small file helpers ------------------------------------------------------
local slurp = require("pushcap.luafile").read_all

-- Writes text to path through path.tmp and a rename.  durable: the text
-- is on disk (fsync) before the rename.  Returns true or nil, err.
local function write_atomic(path, text, durable)
   local tmp = path .. ".tmp"
   local f, err = io.open(tmp, "wb")
   if not f then return nil, err end
   local ok, werr = f:write(text)
   local cok, cerr = f:close()
   if not ok or not cok then
      os.remove(tmp)
      return nil, ("cannot write %s: %s"):format(tmp, tostring(werr or cerr))
   end
   if durable then
      local frc = C.pc_fsync_path(tmp)
      if frc < 0 then
         os.remove(tmp)
         return nil, ("cannot sync %s: %s"):format(tmp, proc.errstr(frc))
      end
   end
   local rc = C.pc_rename(tmp, path)
   if rc < 0 then
      os.remove(tmp)
      return nil, ("cannot rename %s: %s"):format(tmp, proc.errstr(rc))
   end
   return true
end

-- key=value lines; values escaped so that any name or message fits on one line
local function esc(v)
   return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub("\r", "\\r"))
end
local function unesc(v)
   return (v:gsub("\\(.)", { ["\\"] = "\\", n = "\n", r = "\r" }))
end

local function encode(t, keys)
   local out = {}
   for _, k in ipairs(keys) do
      if t[k] ~= nil then out[#out + 1] = k .. "=" .. esc(t[k]) end
   end
   return table.concat(out, "\n") .. "\n"
end

local function decode(text)
   local t = {}
   for line in (text or ""):gmatch("[^\n]+") do
      local k, v = line:match("^([%w_]+)=(.*)$")
      if k then t[k] = unesc(v) end
   end
   return t
end

local META_KEYS = { "name", "pending", "dest", "desc", "config", "queued_ns",
                    "attempts", "reason" }
local STATUS_KEYS = { "pending", "oldest", "reason", "next_ns", "attempting" }

local function plural(n) return n == 1 and "1 split" or (n .. " splits") end

-- ---- paths ---------------------------------------------------------------------
-- The config's name, as the saved positions use it (push_pcap, push_pcap_eod).
function M.config_name(config_path)
   return ((config_path or "push_pcap.lua"):match("([^/]*)$"):gsub("%.lua$", ""))
end

-- <spool>/<Desc>/queue/<config name>: two schedules may both have a target
-- "all", each with its own destination.
function M.queue_dir(config_path, desc)
   return ("%s/%s/queue/%s"):format(paths.spool, desc, M.config_name(config_path))
end

-- ---- the queue (in the worker) ---------------------------------------------------
-- o: desc, config_path, dir (queue_dir), status_path, sink (the target's,
-- for describe), base_delay_ns, post (the target's Post command or nil),
-- out (log function taking a line), host (the fmadiolua to run helpers
-- with; default PUSHCAP_BINDIR/fmadiolua).
function M.new(o)
   local q = setmetatable({
      desc = o.desc, config_path = o.config_path, dir = o.dir, status_path = o.status_path,
      -- at least 0.1 s between attempts: never a busy loop
      sink = o.sink, base = math.max(o.base_delay_ns or 1e9, 1e8), post = o.post, out = o.out,
      host = o.host or ((PUSHCAP_BINDIR or ".") .. "/fmadiolua"),
      entries = {}, fails = 0, next_due = 0, seq = 0, wstatus = ffi.new("int[1]"),
   }, Q)
   local rc = C.pc_mkdirs(q.dir, 448)
   if rc < 0 then return nil, ("cannot create the queue directory %s: %s"):format(q.dir, proc.errstr(rc)) end
   -- LuaJIT starts every process with the same seed: without this, the
   -- jitter would be the same in every worker
   math.randomseed(C.pc_getpid() * 1000003 + tonumber(C.pc_now_ns() % 1000000007))
   return q
end

function Q:log(s) self.out(("push %s: %s"):format(self.desc, s)) end

function Q:count() return #self.entries end

local function data_path(q, id) return ("%s/%s.pcap"):format(q.dir, id) end
local function meta_path(q, id) return ("%s/%s.meta"):format(q.dir, id) end

function Q:oldest()
   local o
   for _, e in ipairs(self.entries) do
      if not o or e.qt < o.qt then o = e end
   end
   return o
end

-- "3 splits pending delivery, oldest <name>: <reason>; next attempt in 8.2 s"
function Q:summary()
   local n = #self.entries
   if n == 0 then return "nothing pending delivery" end
   local o = self:oldest()
   local when
   if self.running then
      when = "re-sending " .. self.running.entry.name .. " now"
   else
      local wait = math.max(0, tonumber(self.next_due - C.pc_mono_ns()) / 1e9)
      when = ("next attempt in %.1f s"):format(wait)
   end
   return ("%s pending delivery, oldest %s: %s; %s"):format(plural(n), o.name, o.reason or "?", when)
end

-- The status file the supervisor reads (removed when nothing is pending).
function Q:write_status()
   if not self.status_path then return end
   if #self.entries == 0 then
      os.remove(self.status_path)
      return
   end
   local o = self:oldest()
   local next_ns = C.pc_now_ns() + math.max(0, tonumber(self.next_due - C.pc_mono_ns()))
   write_atomic(self.status_path, encode({
      pending = #self.entries, oldest = o.name, reason = o.reason or "?",
      next_ns = num.str(next_ns), attempting = self.running and self.running.entry.name or nil,
   }, STATUS_KEYS))
end

function Q:save_meta(e)
   return write_atomic(meta_path(self, e.id), encode(e, META_KEYS))
end

-- Takes a failed split (its spool copy cur.spool, names cur.name and
-- cur.pending) into the queue.  Returns true, or nil and why not; on
-- failure the spool copy is left where it was.
function Q:add(cur, reason)
   self.seq = self.seq + 1
   local id = ("%s-%d"):format(num.str(C.pc_now_ns()), self.seq)
   local e = {
      id = id, name = cur.name, pending = cur.pending, dest = mask(self.sink:describe(cur.name)),
      desc = self.desc, config = M.config_name(self.config_path), queued_ns = num.str(C.pc_now_ns()),
      attempts = 1, reason = mask(reason or "?"),
   }
   -- on disk before the worker's position moves past the split: data,
   -- then the .meta that makes it an entry, then the directory
   local rc = C.pc_fsync_path(cur.spool)
   if rc < 0 then return nil, ("cannot sync %s: %s"):format(cur.spool, proc.errstr(rc)) end
   rc = C.pc_rename(cur.spool, data_path(self, id))
   if rc < 0 then
      return nil, ("cannot move %s into %s: %s"):format(cur.spool, self.dir, proc.errstr(rc))
   end
   local ok, err = write_atomic(meta_path(self, id), encode(e, META_KEYS), true)
   if ok then
      rc = C.pc_fsync_path(self.dir)
      if rc < 0 then ok, err = nil, ("cannot sync %s: %s"):format(self.dir, proc.errstr(rc)) end
   end
   if not ok then
      os.remove(meta_path(self, id))
      C.pc_rename(data_path(self, id), cur.spool)
      return nil, err
   end
   e.qt = num.parse(e.queued_ns)
   self.entries[#self.entries + 1] = e
   if #self.entries == 1 and not self.running then
      -- the first failure: back off before knocking again
      self.fails = math.max(self.fails, 1)
      self.next_due = C.pc_mono_ns() + self:delay()
   end
   self:log(("%s queued for re-sending from %s: %s"):format(e.name, data_path(self, id), e.reason))
   self:log(self:summary())
   self:write_status()
   return true
end

-- The wait before the next attempt after self.fails failures in a row.
function Q:delay()
   local d = math.min(self.base * 2 ^ math.max(self.fails - 1, 0), M.MAX_DELAY_NS)
   return d * (0.5 + 0.5 * math.random())
end

-- A live split was delivered: the remote works, try the queue now.
function Q:nudge()
   if #self.entries > 0 and not self.running then
      self.fails = 0
      self.next_due = C.pc_mono_ns()
   end
end

-- Stops a helper left running by a worker that died (it would race the one
-- this worker starts on the same entry): its pid is in attempt.pid.
function Q:kill_stale_helper()
   local pidfile = self.dir .. "/attempt.pid"
   local pid = tonumber((slurp(pidfile) or ""):match("%d+"))
   os.remove(pidfile)
   if not pid then return end
   local cmdline = slurp(("/proc/%d/cmdline"):format(pid)) or ""
   if not (cmdline:find("pushcap.redeliver", 1, true) and cmdline:find(self.dir, 1, true)) then return end
   self:log(("stopping re-send helper %d left by an earlier worker"):format(pid))
   -- and its uploader: the group it leads
   if proc.kill(-pid, 9) < 0 then proc.kill(pid, 9) end
   for _ = 1, 100 do
      if C.pc_kill(pid, 0) < 0 or not slurp(("/proc/%d/cmdline"):format(pid)) then break end
      C.pc_nap_ns(20e6)
   end
end

-- At start: the entries an earlier worker queued.  Data files without
-- their .meta are from a worker that died while queueing, before it saved
-- its position past the split: that split is made again from the store,
-- so the file is removed.
function Q:scan()
   self:kill_stale_helper()
   local names, err = proc.listdir(self.dir)
   if not names then return nil, err end
   local has = {}
   for _, n in ipairs(names) do has[n] = true end
   for _, n in ipairs(names) do
      local id = n:match("^(.+)%.meta$")
      if id then
         local e = decode(slurp(meta_path(self, id)))
         if not has[id .. ".pcap"] then
            self:log(("queue entry %s (%s) has lost its data file %s: it cannot be re-sent; entry removed")
               :format(id, tostring(e.name), data_path(self, id)))
            os.remove(meta_path(self, id))
         elseif not e.name or not e.pending then
            self:log(("queue entry %s is unreadable (%s): left in place, not re-sent"):format(id, meta_path(self, id)))
         else
            e.id = id
            e.qt = num.parse(e.queued_ns or "0") or num.i64(0)
            e.attempts = tonumber(e.attempts) or 0
            self.entries[#self.entries + 1] = e
         end
      elseif n:match("%.tmp$") or n:match("%.err$") then
         os.remove(self.dir .. "/" .. n)
      elseif n:match("%.done$") then
         local did = n:match("^(.+)%.done$")
         if has[did .. ".pcap"] then
            self:log(("removing %s: delivered before the last stop"):format(data_path(self, did)))
            os.remove(data_path(self, did))
         end
         os.remove(self.dir .. "/" .. n)
      else
         local did = n:match("^(.+)%.pcap$")
         if did and not has[did .. ".meta"] and not has[did .. ".done"] then
            self:log(("removing %s: a split whose queueing did not finish (it is made again from the store)")
               :format(data_path(self, did)))
            os.remove(data_path(self, did))
         end
      end
   end
   table.sort(self.entries, function(a, b) return a.qt < b.qt end)
   if #self.entries > 0 then
      self:log(("%s queued by an earlier run, re-sending from %s"):format(plural(#self.entries), self.dir))
      self:log(self:summary())
      self.next_due = C.pc_mono_ns()
   end
   self:write_status()
   return true
end

-- Starts the helper on e.
function Q:start(e)
   os.remove(("%s/%s.err"):format(self.dir, e.id))
   local argv = { self.host, "-e", "require('pushcap.redeliver').attempt_main(...)",
                  self.config_path, self.desc, self.dir, e.id, paths.get_root() or "" }
   -- a group of its own: stopping it stops its uploader and compressor
   -- too, which would otherwise finish a truncated .pending on their own
   local pid, err = proc.spawn(argv, nil, nil, nil, true)
   if not pid then
      self:attempt_failed(e, err)
      return
   end
   write_atomic(self.dir .. "/attempt.pid", pid .. "\n")
   self.running = { pid = pid, entry = e, t0 = C.pc_mono_ns() }
   self:write_status()
end

function Q:remove(e)
   for i, x in ipairs(self.entries) do
      if x == e then table.remove(self.entries, i) break end
   end
end

function Q:attempt_failed(e, reason)
   e.attempts = (tonumber(e.attempts) or 0) + 1
   e.reason = mask(reason)
   self:save_meta(e)
   -- to the back of the line
   self:remove(e)
   self.entries[#self.entries + 1] = e
   self.fails = self.fails + 1
   self.next_due = C.pc_mono_ns() + self:delay()
   self:log(("re-sending %s failed: %s"):format(e.name, e.reason))
   self:log(self:summary())
   self:write_status()
end

function Q:delivered(e)
   -- marked delivered before its copy goes: a crash in between leaves a
   -- split known to be delivered, not one whose queueing seems unfinished
   local done = ("%s/%s.done"):format(self.dir, e.id)
   os.rename(meta_path(self, e.id), done)
   os.remove(data_path(self, e.id))
   os.remove(done)
   self:remove(e)
   self.fails = 0
   self.next_due = C.pc_mono_ns()
   local age = tonumber(C.pc_now_ns() - e.qt) / 1e9
   self:log(("%s delivered from the queue (%d attempts, queued %.1f s ago); %s")
      :format(e.name, (tonumber(e.attempts) or 0) + 1, age, self:summary()))
   self:write_status()
   if self.post then
      local rc = proc.run_sh(self.post, { e.name })
      self.out(("Post [%s %s] exited %d"):format(self.post, e.name, rc))
   end
end

-- A helper ended with status code.
function Q:reap(code)
   local r = self.running
   self.running = nil
   os.remove(self.dir .. "/attempt.pid")
   local errfile = ("%s/%s.err"):format(self.dir, r.entry.id)
   if code == 0 then
      os.remove(errfile)
      self:delivered(r.entry)
   else
      local why = slurp(errfile)
      os.remove(errfile)
      why = why and why:gsub("%s+$", "") or ("the re-send helper exited %d"):format(code)
      self:attempt_failed(r.entry, why)
   end
end

-- Called between chunks and while idle: never blocks.  Collects a finished
-- helper and starts the next due attempt.
function Q:tick()
   if self.running then
      local rc = C.pc_wait(self.running.pid, self.wstatus, 1)
      if rc == 0 then return end
      self:reap(rc == 1 and C.pc_exit_code(self.wstatus[0]) or 255)
   end
   if #self.entries == 0 or C.pc_mono_ns() < self.next_due or C.pc_signal_pending() ~= 0 then return end
   self:start(self.entries[1])
end

-- The worker stops: a running helper is asked to stop (then killed); its
-- entry stays queued for the next run.
function Q:stop()
   local r = self.running
   if r then
      proc.kill(-r.pid, 15)
      local deadline = C.pc_mono_ns() + STOP_GRACE_NS
      while C.pc_wait(r.pid, self.wstatus, 1) == 0 do
         if C.pc_mono_ns() > deadline then
            proc.kill(-r.pid, 9)
            C.pc_wait(r.pid, self.wstatus, 0)
            break
         end
         C.pc_nap_ns(20e6)
      end
      proc.kill(-r.pid, 9)   -- whatever of its group is left
      self.running = nil
      os.remove(self.dir .. "/attempt.pid")
      os.remove(("%s/%s.err"):format(self.dir, r.entry.id))
   end
   if #self.entries > 0 then
      self:log(("stopping with %s pending delivery; they stay queued in %s and are sent when push runs again")
         :format(plural(#self.entries), self.dir))
   end
   self:write_status()
end

-- ---- the supervisor's view --------------------------------------------------------
-- The text the supervisor adds to its status lines for a target whose
-- status file says something is pending, or nil.
function M.status_line(status_path)
   local t = decode(slurp(status_path))
   local n = tonumber(t.pending)
   if not n or n == 0 then return nil end
   local when
   if t.attempting then
      when = "re-sending " .. t.attempting .. " now"
   else
      local wait = math.max(0, tonumber((num.parse(t.next_ns or "0") or num.i64(0)) - C.pc_now_ns()) / 1e9)
      when = ("next attempt in %.1f s"):format(wait)
   end
   return ("%s pending delivery, oldest %s: %s; %s"):format(plural(n), t.oldest or "?", t.reason or "?", when)
end

-- ---- the helper (a process of its own) -------------------------------------------
-- One re-send of queue entry id: load the config, find the target by Desc,
-- check it still goes where the split was meant to go, send the spool copy
-- to <name>.pending and rename it.  Exits 0 when delivered; otherwise
-- writes the reason to <dir>/<id>.err and exits 1.
function M.attempt_main(config_path, desc, dir, id, root)
   if root and root ~= "" then paths.set_root(root) end
   -- SIGPIPE ignored: a dead upload is an error code, not a silent death
   C.pc_signals_install()
   local function fail(why)
      write_atomic(("%s/%s.err"):format(dir, id), mask(why) .. "\n")
      os.exit(1)
   end
   local e = decode(slurp(("%s/%s.meta"):format(dir, id)))
   if not e.name or not e.pending then fail("queue entry " .. id .. " has no readable .meta") end
   local config = require("pushcap.config")
   local cfg, errors = config.load(config_path)
   if not cfg or #errors > 0 then
      fail(("%s does not load (%s): cannot tell where to send"):format(config_path,
         errors and errors[1] or "unreadable"))
   end
   local t
   for _, x in ipairs(cfg.targets) do
      if x.desc == desc then t = x end
   end
   if not t or not t.res then fail(("%s has no target %s with an output now"):format(config_path, desc)) end
   local s = t.res.sink
   local dest = mask(s:describe(e.name))
   if e.dest and dest ~= e.dest then
      fail(("the target now delivers to %s, but this split was made for %s: it stays queued in %s; "
         .. "restore the target's Path or move the file by hand"):format(dest, e.dest, dir))
   end
   if t.compress == "external" then sinkmod.force_external(s) end
   local comp
   if s.comp then
      local ebuf = ffi.new("char[256]")
      comp = C.pc_comp_new(s.comp.kind, s.comp.level, s.comp.threads, ebuf, 256)
      if comp == nil then sinkmod.force_external(s) end
   end
   local split = require("pushcap.split")
   local ok, err = split.send_spool(s, comp, ("%s/%s.pcap"):format(dir, id), e.pending, nil, true)
   if not ok then fail(err) end
   if C.pc_signal_pending() ~= 0 then fail("stopped by a signal before the rename") end
   local rok, detail = s:rename(e.pending, e.name)
   if not rok then fail(detail) end
   if detail then io.stdout:write("Cmd [", mask(detail), "]\n") end
   io.stdout:flush()
   os.exit(0)
end

return M
