-- pushcap.naming: FMADIO's split file names, <prefix><timestring><suffix>.
-- Time strings are local time (TZ as the appliance); epoch forms are UTC
-- epoch numbers computed with integer arithmetic.
local num = require("pushcap.num")
local C = require("pushcap.ffi")

local M = {}

local function tz(sec)
   -- the zone in force at that time, +HH:MM (upstream printed the current
   -- zone with seconds as minutes; see docs/compat.md)
   local off = tonumber(C.pc_tz_offset(sec))
   local sign = off < 0 and "-" or "+"
   off = math.abs(off)
   return ("%s%02d:%02d"):format(sign, math.floor(off / 3600), math.floor(off % 3600 / 60))
end

local function div(ts, d) return num.str(num.i64(ts) / d) end

-- Each takes the start timestamp (ns) and, for startend, the end one.
local format = {
   ["epoch-sec"] = function(s) return div(s, 1000000000) end,
   ["epoch-sec-startend"] = function(s, e) return div(s, 1000000000) .. "-" .. div(e or s, 1000000000) end,
   ["epoch-msec"] = function(s) return div(s, 1000000) end,
   ["epoch-usec"] = function(s) return div(s, 1000) end,
   ["epoch-nsec"] = function(s) return num.str(s) end,
   ["tstr-HHMM"] = function(s) return os.date("%Y%m%d_%H%M", (num.split(s))) end,
   ["tstr-HHMMSS"] = function(s) return os.date("%Y%m%d_%H%M%S", (num.split(s))) end,
   ["tstr-HHMMSS_TZ"] = function(s)
      local sec = num.split(s)
      return os.date("%Y-%m-%d_%H:%M:%S", sec) .. tz(sec)
   end,
   ["tstr-HHMMSS_NS"] = function(s)
      local sec, sub = num.split(s)
      return os.date("%Y%m%d_%H%M%S", sec) .. (".%03d.%03d.%03d"):format(
         math.floor(sub / 1e6), math.floor(sub / 1e3) % 1000, sub % 1000)
   end,
   ["tstr-HHMMSS_SUB"] = function(s)
      local sec, sub = num.split(s)
      return os.date("%Y%m%d_%H-%M-%S", sec) .. (".%09d"):format(sub)
   end,
}

M.modes = {}
for k in pairs(format) do M.modes[#M.modes + 1] = k end
M.modes[#M.modes + 1] = "strftime"
table.sort(M.modes)
M.default = "tstr-HHMMSS"

-- Returns a function(start_ns, end_ns) -> time string for a mode, or nil
-- and a reason.  strftime takes the format string as its argument.
function M.timestring(mode, strftime_fmt)
   if mode == "strftime" then
      if type(strftime_fmt) ~= "string" or strftime_fmt == "" then
         return nil, "--filename-strftime needs a format string"
      end
      return function(s) return os.date(strftime_fmt, (num.split(s))) end
   end
   local f = format[mode]
   if not f then return nil, "unknown filename mode '" .. tostring(mode) .. "'" end
   return f
end

return M
