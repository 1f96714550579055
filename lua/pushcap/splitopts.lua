-- pushcap.splitopts: pcap_split's options, parsed and checked in one place,
-- for the pcap_split command line and for push targets (whose Split,
-- FileName and SplitCmd fields are pcap_split arguments).
local ffi = require("ffi")
local C = require("pushcap.ffi")
local num = require("pushcap.num")
local naming = require("pushcap.naming")
local sink = require("pushcap.sink")

local M = {}

function M.defaults()
   return { prefix = "", suffix = ".pcap", filename = naming.default, mode = "file",
            retries = 5, retry_delay = 1e9, spool = true }
end

local filename_opts = {}
for _, m in ipairs(naming.modes) do
   if m ~= "strftime" then filename_opts["--filename-" .. m] = m end
end

-- Splits a string of arguments into words: blanks separate, single and
-- double quotes group (a push config's Split = "--split-time 60e9").
function M.words(s)
   local out, cur, quote, any = {}, {}, nil, false
   for ch in tostring(s or ""):gmatch(".") do
      if quote then
         if ch == quote then quote = nil else cur[#cur + 1] = ch end
      elseif ch == "'" or ch == '"' then
         quote, any = ch, true
      elseif ch:match("%s") then
         if #cur > 0 or any then out[#out + 1] = table.concat(cur) end
         cur, any = {}, false
      else
         cur[#cur + 1] = ch
      end
   end
   if quote then return nil, "unbalanced " .. quote .. " quote" end
   if #cur > 0 or any then out[#out + 1] = table.concat(cur) end
   return out
end

-- Parses argv (a list) into o (defaults when nil).  Returns o, or nil and a
-- message naming the argument.  --help sets o.help and stops.
function M.parse(argv, o)
   o = o or M.defaults()
   local i = 1
   local function value(opt, k)
      local v = argv[i + (k or 1)]
      if v == nil then error({ opt .. " needs a value" }) end
      return v
   end
   local function number(opt)
      local v = value(opt)
      local n = num.parse(v)
      if not n then error({ ("%s: '%s' is not a non-negative number"):format(opt, v) }) end
      return n
   end
   local ok, err = pcall(function()
      while i <= #argv do
         local a = argv[i]
         local step = 1
         if a == "--help" or a == "-h" then o.help = true; return
         elseif a == "-o" then o.prefix = value(a); step = 2
         elseif a == "--split-byte" then o.split, o.target = "byte", number(a); step = 2
         elseif a == "--split-time" then o.split, o.target = "time", number(a); step = 2
         elseif a == "--split-time-roundup" then o.roundup = number(a); step = 2
         elseif a == "--roll-period" then o.roll_period = number(a); step = 2
         elseif a == "--packet-chomp" then o.chomp = tonumber(number(a)); step = 2
         elseif filename_opts[a] then o.filename = filename_opts[a]
         elseif a == "--filename-strftime" then o.filename, o.strftime = "strftime", value(a); step = 2
         elseif a == "--filename-suffix" then o.suffix = value(a); step = 2
         elseif a == "--pipe-cmd" then o.pipe_cmd = value(a); step = 2
         elseif a == "--pipe-external" then o.pipe_external = true
         elseif a == "--rclone" then o.mode = "rclone"
         elseif a == "--rclone-pending" then o.rclone_pending = true
         elseif a == "--curl" then
            o.mode, o.curl_args, o.curl_url = "curl", value(a), value(a, 2)
            step = 3
         elseif a == "--ssh" then o.mode, o.ssh_spec = "ssh", value(a); step = 2
         elseif a == "--null" then o.mode = "null"
         elseif a == "--script-new" then o.script_new = value(a); step = 2
         elseif a == "--script-close" then o.script_close = value(a); step = 2
         elseif a == "-Z" then o.owner_spec = value(a); step = 2
         elseif a == "--cpu" then o.cpu = value(a); step = 2
         elseif a == "--uid" then value(a); step = 2
         elseif a == "--ring" then o.ring = value(a); step = 2
         elseif a == "-i" then o.input = value(a); step = 2
         elseif a == "--root" then o.root = value(a); step = 2
         elseif a == "--spool-dir" then o.spool_dir = value(a); step = 2
         elseif a == "--no-spool" then o.spool = false
         elseif a == "--retry" then o.retries = tonumber(number(a)); step = 2
         elseif a == "--retry-delay" then o.retry_delay = tonumber(number(a)); step = 2
         elseif a == "-v" then o.verbose = true
         else
            error({ "unknown command [" .. a .. "]" })
         end
         i = i + step
      end
   end)
   if not ok then
      if type(err) == "table" then return nil, err[1] end
      error(err, 0)
   end
   return o
end

-- Checks a parsed o and works out what it implies.  Returns
-- { timestring, sink, owner, cpus } or nil and a message.
function M.resolve(o)
   if not o.split then
      return nil, "invalid config. no split type time/bytes specified (use --split-time or --split-byte)"
   end
   if o.target == num.i64(0) then return nil, "the split size/time must be greater than 0" end
   local r = {}
   local err
   r.timestring, err = naming.timestring(o.filename, o.strftime)
   if not r.timestring then return nil, err end
   r.sink, err = sink.new({ mode = o.mode, pipe_cmd = o.pipe_cmd, curl_args = o.curl_args,
                            curl_url = o.curl_url, ssh_spec = o.ssh_spec, pipe_external = o.pipe_external,
                            rclone_pending = o.rclone_pending })
   if not r.sink then return nil, err end
   if o.owner_spec then
      local uid, gid, ebuf = ffi.new("int[1]"), ffi.new("int[1]"), ffi.new("char[256]")
      if C.pc_lookup_owner(o.owner_spec, uid, gid, ebuf, 256) < 0 then
         return nil, "-Z: " .. ffi.string(ebuf)
      end
      r.owner = { uid = uid[0], gid = gid[0] }
   end
   if o.cpu then
      r.cpus = {}
      for c in tostring(o.cpu):gmatch("[^,]+") do
         local n = tonumber(c)
         if not n or n < 0 or n % 1 ~= 0 then return nil, "--cpu: '" .. c .. "' is not a CPU number" end
         r.cpus[#r.cpus + 1] = n
      end
      if #r.cpus == 0 then return nil, "--cpu needs a list such as 2,3" end
   end
   return r
end

-- Pins this process (and the children it starts) to cpus.
function M.pin(cpus)
   local rc = C.pc_set_cpus(ffi.new("int[?]", #cpus, cpus), #cpus)
   if rc < 0 then return nil, ffi.string(C.pc_strerror(rc)) end
   return true
end

-- The split engine's configuration for o and its resolution r.
function M.engine_config(o, r, extra)
   local cfg = {
      split = o.split, target = o.target, roundup = o.roundup, roll_period = o.roll_period,
      chomp = o.chomp, prefix = o.prefix, suffix = o.suffix, timestring = r.timestring,
      startend = o.filename == "epoch-sec-startend", sink = r.sink,
      script_new = o.script_new, script_close = o.script_close, owner = r.owner,
      retries = o.retries, retry_delay_ns = o.retry_delay,
   }
   for k, v in pairs(extra or {}) do cfg[k] = v end
   return cfg
end

return M
