#!/usr/bin/env fmadiolua
-- push_pcap.lua: push captured traffic to every target of push_pcap.lua.
--
-- The supervisor starts one worker process per target (this script again,
-- with --worker N), sends each worker's output to its own log, prints the
-- appliance's status line for every target each 15 s, and restarts a worker
-- that dies, with backoff.  Workers resume from their saved positions.
local ffi = require("ffi")
local C = require("pushcap.ffi")
local config = require("pushcap.config")
local paths = require("pushcap.paths")
local proc = require("pushcap.proc")

local HELP = [[
push_pcap.lua: push captures from the store to the targets of a push config

usage: push_pcap.lua [--force] [--offline <capture>] [--config <file>] [--check]

  --offline <capture>  push that stored capture to its end, then exit 0
                       (without it: follow the active capture until stopped)
  --config <file>      the push config (default <root>/opt/fmadio/etc/push_pcap.lua)
  --check              check the config, print the resolved targets, exit
  --force              accepted for compatibility (run even if a schedule exists)
  --root <dir>         move /opt/fmadio and /mnt/store0 under dir (or PUSHCAP_ROOT)
  --analytics-log <engine>  write this output to <root>/mnt/store0/log/
                       analytics_<engine>_YYYYMMDD_HHMM and its .cur link, as the
                       appliance's scheduler does (the loaders pass it)
  --help               this text

Each target logs to <root>/mnt/store0/log/push_<Desc>_YYYYMMDD_HHMM (and
push_<Desc>.cur); this process prints a status line per target every 15 s.
SIGINT/SIGTERM stop every worker after its current split.
]]

local function die(msg, code)
   io.stderr:write("push_pcap: ", msg, "\n")
   os.exit(code or 1)
end

local o = {}
local i = 1
while i <= #arg do
   local a = arg[i]
   local function value()
      i = i + 1
      if arg[i] == nil then die(a .. " needs a value", 2) end
      return arg[i]
   end
   if a == "--help" or a == "-h" then io.write(HELP); os.exit(0)
   elseif a == "--force" then o.force = true
   elseif a == "--offline" then o.offline = value()
   elseif a == "--config" then o.config = value()
   elseif a == "--check" then o.check = true
   elseif a == "--root" then o.root = value(); paths.set_root(o.root)
   elseif a == "--worker" then o.worker = tonumber(value())
   elseif a == "--analytics-log" then o.analytics_log = value()
   else die("unknown option [" .. a .. "] (see --help)", 2) end
   i = i + 1
end
o.config = o.config or (paths.etc .. "/push_pcap.lua")

print(("loading filename [%s]"):format(o.config))
if C.pc_exists(o.config) == 0 then
   die(("no config at %s: copy %s/push_pcap.lua.basic there and edit its targets"):format(o.config, paths.etc_ro))
end
local cfg, errors, warnings = config.load(o.config)
for _, w in ipairs(warnings or {}) do io.stderr:write("push_pcap: warning: ", w, "\n") end
if not cfg or #errors > 0 then
   for _, e in ipairs(errors or {}) do io.stderr:write("push_pcap: ", e, "\n") end
   die(("%d problem(s) in %s; nothing was started"):format(#(errors or {}), o.config))
end

if o.check then
   for _, line in ipairs(config.describe(cfg)) do print(line) end
   os.exit(0)
end

-- ---- a worker ---------------------------------------------------------------------
if o.worker then
   local t = cfg.targets[o.worker]
   if not t then die("no target " .. o.worker, 2) end
   local worker = require("pushcap.worker")
   os.exit(worker.run(cfg, t, { offline = o.offline }))
end

-- ---- the supervisor ----------------------------------------------------------------
C.pc_signals_install()
C.pc_sigchld_wakes()
local rc = C.pc_mkdirs(paths.log, 493)
if rc < 0 then die(("cannot create %s: %s"):format(paths.log, proc.errstr(rc))) end
-- one supervisor per config (each worker also locks its target)
do
   local lock_file = require("pushcap.worker").supervisor_lock_path(o.config)
   C.pc_mkdirs(lock_file:match("^(.*)/"), 448)
   local lock, lerr, holder = proc.lock(lock_file)
   if not lock and holder then
      die(("another push_pcap (pid %d) is running with %s: stop it first (or the analytics scheduler row "
         .. "that starts it)"):format(holder, o.config))
   elseif not lock then
      die(lerr)
   end
end
-- Under analytics_scheduler the output already goes to that log (the
-- scheduler sets PUSHCAP_ANALYTICS_LOG to it); run by hand, the loader's
-- --analytics-log makes the same file here.
if o.analytics_log and not os.getenv("PUSHCAP_ANALYTICS_LOG") then
   -- the status lines go where the appliance's scheduler puts them
   local name = ("analytics_%s_%s"):format(o.analytics_log, os.date("%Y%m%d_%H%M"))
   local fd = C.pc_open_append(paths.log .. "/" .. name)
   if fd < 0 then die(("cannot open %s/%s: %s"):format(paths.log, name, proc.errstr(fd))) end
   io.stdout:flush()
   C.pc_dup2(fd, 1)
   C.pc_dup2(fd, 2)
   C.pc_close(fd)
   C.pc_symlink(name, ("%s/analytics_%s.cur"):format(paths.log, o.analytics_log))
end

local self_path = arg[0]
local host = (PUSHCAP_BINDIR or ".") .. "/fmadiolua"

local workers = {}
local function start(w)
   local t = w.target
   local stamp = os.date("%Y%m%d_%H%M")
   local log_path = ("%s/push_%s_%s"):format(paths.log, t.desc, stamp)
   local fd = C.pc_open_append(log_path)
   if fd < 0 then
      io.stderr:write(("push_pcap: cannot open log %s: %s\n"):format(log_path, proc.errstr(fd)))
      return false
   end
   C.pc_symlink(("push_%s_%s"):format(t.desc, stamp), ("%s/push_%s.cur"):format(paths.log, t.desc))
   local argv = { host, self_path, "--worker", tostring(w.index), "--config", o.config }
   if o.offline then argv[#argv + 1] = "--offline"; argv[#argv + 1] = o.offline end
   if o.root then argv[#argv + 1] = "--root"; argv[#argv + 1] = o.root end
   local pid, err = proc.spawn(argv, nil, fd, fd)
   C.pc_close(fd)
   if not pid then
      io.stderr:write("push_pcap: ", err, "\n")
      return false
   end
   w.pid, w.log = pid, log_path
   w.started = C.pc_mono_ns()
   print(("push [%-40s : started pid %d log %s]"):format(t.desc, pid, log_path))
   return true
end

for idx, t in ipairs(cfg.targets) do
   local w = { index = idx, target = t, failures = 0 }
   workers[#workers + 1] = w
   start(w)
end

local redeliver = require("pushcap.redeliver")
local status = ffi.new("int[1]")
local next_status = C.pc_mono_ns()
local exit_code = 0
while true do
   local running = 0
   local now = C.pc_mono_ns()
   for _, w in ipairs(workers) do
      if w.pid then
         local r = C.pc_wait(w.pid, status, 1)
         if r == 1 then
            local code = C.pc_exit_code(status[0])
            w.pid = nil
            if code == 0 and (o.offline or C.pc_signal_pending() ~= 0) then
               w.done = true
               print(("push [%-40s : finished]"):format(w.target.desc))
            elseif C.pc_signal_pending() == 0 then
               -- a crash or a failure: restart, waiting longer each time it
               -- fails quickly (a worker that ran a minute starts afresh)
               if now - w.started > 60e9 then w.failures = 0 end
               w.failures = w.failures + 1
               local delay = math.min(2 ^ (w.failures - 1), 60)
               w.restart_at = now + delay * 1e9
               print(("push [%-40s : exited %d, restart in %d s]"):format(w.target.desc, code, delay))
               if o.offline and w.failures > 5 then
                  w.done, exit_code = true, 1
                  print(("push [%-40s : gave up after %d failures]"):format(w.target.desc, w.failures))
               end
            end
         end
      end
      if not w.pid and not w.done and w.restart_at and now >= w.restart_at and C.pc_signal_pending() == 0 then
         w.restart_at = nil
         start(w)
      end
      if w.pid or (not w.done and C.pc_signal_pending() == 0) then running = running + 1 end
   end
   if now >= next_status then
      for _, w in ipairs(workers) do
         local alive = w.pid ~= nil
         local date = os.date("%a %b %d %H:%M:%S %Y")
         print(("[%s] push [%-40s : stream_cat:%s split:%s]"):format(date, w.target.desc,
            tostring(alive), tostring(alive)))
         -- splits waiting in the target's delivery queue: a second line,
         -- only then, so the appliance's line stays as parsers expect it
         local pending = redeliver.status_line(require("pushcap.worker").status_path(o.config, w.target.desc))
         if pending then print(("[%s] push [%-40s : %s]"):format(date, w.target.desc, pending)) end
      end
      io.stdout:flush()
      next_status = now + 15e9
   end
   if running == 0 then break end
   local sig = C.pc_signal_pending()
   if sig ~= 0 and not o.forwarded then
      for _, w in ipairs(workers) do
         if w.pid then proc.kill(w.pid, 15) end
      end
      o.forwarded = true
   end
   -- a worker's exit (SIGCHLD) ends the nap: an offline run ends as soon
   -- as its workers do
   C.pc_nap_ns(20e6)
   io.stdout:flush()
end
for _, w in ipairs(workers) do
   if not w.done then exit_code = exit_code ~= 0 and exit_code or (C.pc_signal_pending() ~= 0 and 0 or 1) end
end
os.exit(exit_code)
