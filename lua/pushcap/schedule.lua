-- pushcap.schedule: the analytics scheduler's rows, checked and evaluated.
--
-- The schedule file (<root>/opt/fmadio/etc/analytics_schedule.lua) is Lua
-- returning { Schedule = { row, ... } }.  A row is the appliance's GUI row:
--   { Engine = "push_pcap", Always = true }                    -- 24/7
--   { Engine = "push_pcap_eod", Start = "18:00", Stop = "23:30",
--     Mon = true, Tue = true, Wed = true, Thu = true, Fri = true }
-- Start and Stop are local times (HH:MM or HH:MM:SS); Stop before Start is
-- a window over midnight that belongs to Start's day.  Without any day
-- field a row runs every day.  docs/scheduler.md has the details.
local paths = require("pushcap.paths")

local M = {}

-- os.date's wday order
M.DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local DAY_INDEX = {}
for i, d in ipairs(M.DAYS) do DAY_INDEX[d] = i end
local WEEK = 7 * 86400

local FIELDS = { Engine = true, Always = true, Start = true, Stop = true }
for _, d in ipairs(M.DAYS) do FIELDS[d] = true end

function M.default_path() return paths.etc .. "/analytics_schedule.lua" end

-- Directories searched for an engine, in order: the appliance's analytics
-- directory, the one shipped beside this build (the loaders push_pcap...),
-- then the user's etc/analytics, whose files the appliance links into its
-- analytics directory.
function M.engine_dirs()
   local dirs = { paths.analytics }
   local shipped = M.shipped_dir()
   if shipped ~= paths.analytics then dirs[#dirs + 1] = shipped end
   dirs[#dirs + 1] = paths.etc .. "/analytics"
   return dirs
end

-- The top of this installation or checkout: the parent of fmadiolua's
-- directory (bin/ installed, build/ in a checkout).
function M.install_dir()
   local bindir = rawget(_G, "PUSHCAP_BINDIR") or "."
   return (bindir:gsub("/[^/]+/?$", ""))
end

-- The analytics directory of this installation (<top>/analytics).
function M.shipped_dir() return M.install_dir() .. "/analytics" end

-- The first runnable file of that name (a directory or a file without the
-- execute bit would only fail when the scheduler starts it).
function M.find_engine(name)
   if name:match("^%.*$") then return nil end
   local C = require("pushcap.ffi")
   for _, dir in ipairs(M.engine_dirs()) do
      local p = dir .. "/" .. name
      if C.pc_is_executable(p) == 1 then return p end
   end
   return nil
end

-- "HH:MM" or "HH:MM:SS" to seconds of the day, or nil.
function M.parse_time(s)
   if type(s) ~= "string" then return nil end
   local h, m, sec = s:match("^%s*(%d%d?):(%d%d)%s*$")
   if not h then h, m, sec = s:match("^%s*(%d%d?):(%d%d):(%d%d)%s*$") end
   h, m, sec = tonumber(h), tonumber(m), tonumber(sec or 0)
   if not h or h > 23 or m > 59 or sec > 59 then return nil end
   return h * 3600 + m * 60 + sec
end

-- The week-relative intervals [a, b) (seconds from Sunday 00:00) a checked
-- row covers, for overlap checks.
local function intervals(r)
   if r.always then return { { 0, WEEK } } end
   local out = {}
   for wd = 1, 7 do
      if r.days[wd] then
         local a = (wd - 1) * 86400 + r.start
         local len = (r.stop - r.start) % 86400
         local b = a + len
         if b <= WEEK then
            out[#out + 1] = { a, b }
         else
            out[#out + 1] = { a, WEEK }
            out[#out + 1] = { 0, b - WEEK }
         end
      end
   end
   return out
end

local function overlap(x, y)
   for _, p in ipairs(intervals(x)) do
      for _, q in ipairs(intervals(y)) do
         if p[1] < q[2] and q[1] < p[2] then return true end
      end
   end
   return false
end

local function show(v)
   if type(v) == "string" then return ("%q"):format(v) end
   return tostring(v)
end

-- Checks rows (the Schedule list).  Returns the good rows, each as
-- { row = n, engine, path, always, start, stop, days = {[wday] = true} },
-- and a list of messages naming the row, its engine and the field.
-- opts.find_engine replaces the engine lookup (nil = search engine_dirs).
function M.check(rows, opts)
   opts = opts or {}
   local find = opts.find_engine or M.find_engine
   local good, errors = {}, {}
   if type(rows) ~= "table" then
      return good, { "Schedule: expected a list of rows, got " .. type(rows) }
   end
   for n, row in ipairs(rows) do
      local bad = false
      local label = ("row %d"):format(n)
      local function problem(field, msg)
         errors[#errors + 1] = ("%s: %s: %s"):format(label, field, msg)
         bad = true
      end
      if type(row) ~= "table" then
         problem("row", "expected a table, got " .. type(row))
      else
         if type(row.Engine) == "string" then label = ("row %d (%s)"):format(n, row.Engine) end
         local keys = {}
         for k in pairs(row) do keys[#keys + 1] = tostring(k) end
         table.sort(keys)
         for _, k in ipairs(keys) do
            if not FIELDS[k] then
               problem(k, "unknown field (fields: Engine, Always, Start, Stop, Mon..Sun)")
            end
         end
         local r = { row = n, engine = row.Engine, days = {} }
         if type(row.Engine) ~= "string" or not row.Engine:match("^[%w_.%-]+$") then
            problem("Engine", ("%s is not an engine name (letters, digits, _ . -)"):format(show(row.Engine)))
         else
            r.path = find(row.Engine)
            if not r.path then
               problem("Engine", ("no engine %q in %s"):format(row.Engine, table.concat(M.engine_dirs(), ", ")))
            end
         end
         if row.Always ~= nil and type(row.Always) ~= "boolean" then
            problem("Always", ("%s is not true or false"):format(show(row.Always)))
         end
         r.always = row.Always == true
         local any_day = false
         for wd, d in ipairs(M.DAYS) do
            local v = row[d]
            if v ~= nil then
               any_day = true
               if type(v) ~= "boolean" then
                  problem(d, ("%s is not true or false"):format(show(v)))
               elseif v then
                  r.days[wd] = true
               end
            end
         end
         if not any_day then
            for wd = 1, 7 do r.days[wd] = true end
         end
         if r.always then
            if row.Start ~= nil or row.Stop ~= nil then
               problem(row.Start ~= nil and "Start" or "Stop", "a 24/7 row (Always = true) has no Start or Stop")
            end
         else
            for _, f in ipairs({ "Start", "Stop" }) do
               if row[f] == nil then
                  problem(f, "missing (give Start and Stop, or Always = true)")
               else
                  local t = M.parse_time(row[f])
                  if not t then
                     problem(f, ("%s is not a time of day (HH:MM or HH:MM:SS, 00:00 to 23:59:59)"):format(show(row[f])))
                  end
                  r[f:lower()] = t
               end
            end
            if r.start and r.stop and r.start == r.stop then
               problem("Stop", "equals Start: the window is empty (use Always = true for 24/7)")
            end
            if any_day and next(r.days) == nil then
               problem("Mon..Sun", "no day is true: the row never runs")
            end
         end
         if not bad then
            for _, g in ipairs(good) do
               if g.engine == r.engine and overlap(g, r) then
                  problem("Start", ("overlaps row %d, which runs the same engine"):format(g.row))
                  break
               end
            end
         end
         if not bad then good[#good + 1] = r end
      end
   end
   return good, errors
end

-- What a schedule file may use: data and a little arithmetic, nothing that
-- reaches the system (fmadiocli evaluates it the same way).
function M.file_env()
   return { os = { date = os.date, time = os.time }, string = string, math = math,
            tonumber = tonumber, tostring = tostring, ipairs = ipairs, pairs = pairs }
end

-- Loads and checks the schedule file.  Returns the good rows (or nil when
-- the file cannot be used at all) and the list of problems.
function M.load(path, opts)
   path = path or M.default_path()
   local ret, err = require("pushcap.luafile").eval(path, M.file_env())
   if err then return nil, { err } end
   if type(ret) ~= "table" then
      return nil, { ("%s: must return a table { Schedule = { ... } }, returned %s"):format(path, type(ret)) }
   end
   for k in pairs(ret) do
      if k ~= "Schedule" then
         return nil, { ("%s: unknown top-level field %s (expected Schedule)"):format(path, tostring(k)) }
      end
   end
   local good, errors = M.check(ret.Schedule or {}, opts)
   for i, e in ipairs(errors) do errors[i] = path .. ": " .. e end
   return good, errors
end

-- Whether a checked row's window is open at local time t (epoch seconds,
-- already shifted back by TimeOffset).
function M.active(r, t)
   if r.always then return true end
   local d = os.date("*t", t)
   local sod = d.hour * 3600 + d.min * 60 + d.sec
   local wd = d.wday
   if r.start < r.stop then
      return r.days[wd] == true and sod >= r.start and sod < r.stop
   end
   -- over midnight: the evening part belongs to today, the morning part
   -- to yesterday's row
   local yesterday = wd == 1 and 7 or wd - 1
   return (r.days[wd] == true and sod >= r.start) or (r.days[yesterday] == true and sod < r.stop)
end

-- A row as one line for logs: "push_pcap 24/7" or
-- "push_pcap_eod 18:00:00-23:30:00 Mon,Tue".
function M.describe(r)
   if r.always then return r.engine .. " 24/7" end
   local days = {}
   for wd, d in ipairs(M.DAYS) do
      if r.days[wd] then days[#days + 1] = d end
   end
   local function hms(s) return ("%02d:%02d:%02d"):format(math.floor(s / 3600), math.floor(s % 3600 / 60), s % 60) end
   return ("%s %s-%s %s"):format(r.engine, hms(r.start), hms(r.stop),
      #days == 7 and "daily" or table.concat(days, ","))
end

return M
