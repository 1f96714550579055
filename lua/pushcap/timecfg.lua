-- pushcap.timecfg: the appliance's clock settings in <root>/opt/fmadio/etc/time.lua.
--
-- Scheduler.TimeOffset (ns) shifts every local-time boundary the box keeps:
-- the capture writer's daily roll and the analytics scheduler's windows.
-- The file is Lua: `Scheduler = { TimeOffset = N }`,
-- `Scheduler.TimeOffset = N` or `return { Scheduler = { TimeOffset = N } }`.
local paths = require("pushcap.paths")

local M = {}

function M.path() return paths.etc .. "/time.lua" end

-- Returns the offset in ns (0 when the file or field is absent), and a
-- message when the file exists but cannot be used.
function M.offset_ns()
   local path = M.path()
   if require("pushcap.ffi").pc_exists(path) == 0 then return 0 end
   local env = { Scheduler = {}, tonumber = tonumber, math = math }
   local ret, err = require("pushcap.luafile").eval(path, env)
   if err then return 0, "ignoring " .. err end
   local sched = type(ret) == "table" and (ret.Scheduler or ret) or env.Scheduler
   local raw = type(sched) == "table" and sched.TimeOffset or nil
   if raw == nil then return 0 end
   local v = tonumber(raw)
   -- an offset of more than a day is a mistake (and inf/nan would move
   -- every window to another century)
   if not v or v ~= v or math.abs(v) > 86400e9 then
      return 0, ("ignoring %s: Scheduler.TimeOffset %s is not a number of ns within a day"):format(path, tostring(raw))
   end
   return math.floor(v)
end

return M
