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
   local v = type(sched) == "table" and tonumber(sched.TimeOffset) or 0
   if not v then return 0, ("ignoring %s: Scheduler.TimeOffset is not a number"):format(path) end
   return math.floor(v)
end

return M
