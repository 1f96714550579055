-- pushcap.compress: which pipe commands (pcap_split --pipe-cmd, a push
-- target's PipeCmd) pushcap can run in-process instead of as a process.
--
-- recognise(cmd) reads a command line and returns what runtime/compress.c
-- needs to produce the same file format with the same level and thread
-- count, or nil when it cannot promise that; the command then runs as a
-- process exactly as written.  Recognised (flags in any order):
--
--   gzip [-c|--stdout|--to-stdout] [-1..-9|--fast|--best] [-q] [-f]
--   pigz [the same] [-p N|--processes N]       (threads; default: CPU count)
--   lz4  [-c|--stdout] [-1..-12|--best] [-q] [-f] [-z]
--   zstd [-c|--stdout] [-1..-19|--fast[=N]] [-T N|--threads=N] [-q] [-f] [-z]
--        [--no-progress]                        (-T0: the CPU count)
--
-- Short flags may be grouped (-qc, -9c; gzip takes one digit per group).
-- Without -c these programs still read stdin and write stdout, so -c is
-- optional.  Anything else -- another program (xz, bzip2...), a flag not
-- listed (-d, --rm, --ultra, -B, lz4 --fast, pigz -11), a path other than
-- /bin or /usr/bin, quotes, redirections, pipes, variables -- gives nil.
--
-- gzip runs in zlib, one thread.  pigz runs block-parallel the way pigz
-- does (runtime/compress.c), one gzip member that gzip -dc reads; its
-- compressed bytes differ from pigz's, its content does not.  zstd uses
-- libzstd's workers (-T1, the default, is one worker beside the splitter,
-- as the zstd process was).
local C = require("pushcap.ffi")

local M = {}

-- Online CPUs (/sys/devices/system/cpu/online, e.g. "0-3,6"), for zstd -T0
-- and pigz's default.
function M.cpu_count()
   local f = io.open("/sys/devices/system/cpu/online")
   local s = f and f:read("*l")
   if f then f:close() end
   local n = 0
   for a, b in tostring(s or ""):gmatch("(%d+)%-?(%d*)") do
      n = n + (b ~= "" and (tonumber(b) - tonumber(a) + 1) or 1)
   end
   if n > 0 then return n end
   n = 0
   for l in io.lines("/proc/cpuinfo") do
      if l:match("^processor%s*:") then n = n + 1 end
   end
   return math.max(n, 1)
end

local MAX_THREADS = 256

-- per program: kind, default level, max level, grouped letters that take
-- no value, long flags that take no value (level changes as values)
local programs = {
   gzip = { kind = "GZIP", suffix = ".pcap.gz", level = 6, max = 9, one_digit = true,
            letters = { c = true, q = true, f = true },
            long = { ["--stdout"] = true, ["--to-stdout"] = true, ["--quiet"] = true, ["--force"] = true,
                     ["--fast"] = 1, ["--best"] = 9 } },
   lz4 = { kind = "LZ4", suffix = ".pcap.lz4", level = 1, max = 12,
           letters = { c = true, q = true, f = true, z = true },
           long = { ["--stdout"] = true, ["--quiet"] = true, ["--force"] = true, ["--compress"] = true,
                    ["--best"] = 12 } },
   zstd = { kind = "ZSTD", suffix = ".pcap.zst", level = 3, max = 19,
            letters = { c = true, q = true, f = true, z = true },
            long = { ["--stdout"] = true, ["--quiet"] = true, ["--force"] = true, ["--compress"] = true,
                     ["--no-progress"] = true, ["--fast"] = -1 } },
}
programs.pigz = { kind = "GZIP", suffix = ".pcap.gz", level = 6, max = 9, threads_default = "cpus",
                  letters = programs.gzip.letters, long = programs.gzip.long }

local function int(s)
   if not s or not s:match("^%d+$") or #s > 6 then return nil end
   return tonumber(s)
end

-- Returns { kind = C.PC_COMP_*, level =, threads =, suffix =, program = }
-- or nil.  Never raises.
function M.recognise(cmd)
   if type(cmd) ~= "string" then return nil end
   -- plain words only: no quoting, expansion, redirection or command lists
   if cmd:find("[^%w%s%-%./=_]") then return nil end
   local words = {}
   for w in cmd:gmatch("%S+") do words[#words + 1] = w end
   if #words == 0 then return nil end
   local name = words[1]:match("^/usr/bin/([%w]+)$") or words[1]:match("^/bin/([%w]+)$") or words[1]
   local p = programs[name]
   if not p then return nil end
   local level, threads = p.level, nil
   local i = 2
   while i <= #words do
      local w = words[i]
      local lv = p.long[w]
      if lv == true then
         -- a flag without effect on the output
      elseif lv then
         level = lv
      elseif name == "zstd" and w:match("^%-%-fast=") then
         local n = int(w:match("^%-%-fast=(.*)$"))
         if not n or n < 1 then return nil end
         level = -n
      elseif name == "zstd" and (w:match("^%-T%d+$") or w:match("^%-%-threads=%d+$")) then
         threads = int(w:match("(%d+)$"))
         if not threads then return nil end
         if threads == 0 then threads = M.cpu_count() end
      elseif name == "zstd" and w == "-T" then
         -- zstd wants the number attached (-T4); "-T 4" is a usage error there
         return nil
      elseif name == "pigz" and (w == "-p" or w == "--processes") then
         threads = int(words[i + 1])
         if not threads or threads < 1 then return nil end
         i = i + 1
      elseif w:match("^%-[%a%d]+$") then
         -- a group of short flags with at most one level number in it
         local digits = 0
         for part in w:sub(2):gmatch("%d+") do
            digits = digits + 1
            local n = int(part)
            if not n or n < 1 or n > p.max or (p.one_digit and #part > 1) then return nil end
            level = n
         end
         if digits > 1 then return nil end
         for ch in w:sub(2):gmatch("%a") do
            if not p.letters[ch] then return nil end
         end
      else
         return nil
      end
      i = i + 1
   end
   if p.threads_default == "cpus" and not threads then threads = M.cpu_count() end
   threads = math.min(threads or 1, MAX_THREADS)
   return { kind = C["PC_COMP_" .. p.kind], level = level, threads = threads, suffix = p.suffix,
            program = name }
end

return M
