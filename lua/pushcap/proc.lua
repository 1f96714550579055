-- pushcap.proc: start and wait for child processes from argv tables.
-- File names always travel as separate argv entries; a user's command
-- string runs as `sh -c CMD sh ARG...`, so the file names it is given are
-- "$1", "$2"... inside it and are never parsed by the shell.
local ffi = require("ffi")
local C = require("pushcap.ffi")

local M = {}

-- Starts argv with the given stdin/stdout/stderr fds (nil = inherit);
-- group = true makes the child lead a new process group (signal -pid).
-- Returns the pid, or nil and a message.
function M.spawn(argv, fd_in, fd_out, fd_err, group)
   local cargv = ffi.new("const char *[?]", #argv + 1)
   for i, a in ipairs(argv) do cargv[i - 1] = a end
   cargv[#argv] = nil
   local pid = (group and C.pc_spawn_group or C.pc_spawn)(cargv, fd_in or -1, fd_out or -1, fd_err or -1)
   if pid < 0 then
      return nil, ("cannot start %s: %s"):format(argv[1], ffi.string(C.pc_strerror(pid)))
   end
   return pid
end

local status = ffi.new("int[1]")

-- Waits for pid; returns its exit code (128+signal when killed).
function M.wait(pid)
   local rc = C.pc_wait(pid, status, 0)
   if rc < 0 then return 255 end
   return C.pc_exit_code(status[0])
end

-- argv that runs a user's command string with extra positional arguments,
-- appended as "$@" unless the command places them itself ("$1" ...).
function M.sh_argv(cmd, args, placed)
   local argv = { "sh", "-c", cmd }
   if args and #args > 0 then
      if not placed then argv[3] = cmd .. ' "$@"' end
      argv[4] = "sh"
      for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
   end
   return argv
end

-- Runs a user's command string to completion; returns its exit code.
function M.run_sh(cmd, args)
   local pid, err = M.spawn(M.sh_argv(cmd, args))
   if not pid then return 127, err end
   return M.wait(pid)
end

-- Runs argv to completion with stdout discarded; returns the exit code.
function M.run(argv, fd_out)
   local pid, err = M.spawn(argv, nil, fd_out)
   if not pid then return 127, err end
   return M.wait(pid)
end

-- Quotes s for a POSIX shell on the far side of ssh, which always parses
-- the command it is sent: the one place a file name meets a shell.
function M.quote(s)
   return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The names in directory dir (unsorted), or nil and a message.
function M.listdir(dir)
   local size = 4096
   while true do
      local buf = ffi.new("char[?]", size)
      local n = tonumber(C.pc_listdir(dir, buf, size))
      if n < 0 then return nil, ("cannot list %s: %s"):format(dir, M.errstr(n)) end
      if n <= size then
         local names = {}
         for name in ffi.string(buf, n):gmatch("([^%z]+)%z") do names[#names + 1] = name end
         return names
      end
      size = n + 4096
   end
end

-- Takes the exclusive lock file at path (see pc_lock); returns its fd, or
-- nil, a message naming the holder, and the holder's pid.
function M.lock(path, inherit)
   local holder = ffi.new("int[1]")
   local fd = C.pc_lock(path, inherit and 1 or 0, holder)
   if fd >= 0 then return fd end
   if fd == -11 then  -- EWOULDBLOCK
      return nil, ("%s is held by pid %d"):format(path, holder[0]), holder[0]
   end
   return nil, ("cannot lock %s: %s"):format(path, M.errstr(fd))
end

function M.kill(pid, sig) return C.pc_kill(pid, sig or 15) end

function M.errstr(rc)
   return ffi.string(C.pc_strerror(rc))
end

return M
