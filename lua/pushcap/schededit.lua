-- pushcap.schededit: the changes fmadiocli makes to the analytics schedule.
--
-- The schedule file returns { Schedule = { row, ... } }; a row is
--   { Engine = "push_pcap", Always = true }
--   { Engine = "push_pcap_eod", Start = "18:00", Stop = "23:30",
--     Mon = true, Tue = true, Wed = true, Thu = true, Fri = true, Sat = false, Sun = false }
-- This module builds and changes rows from command-line words; whether a
-- row is good (times, days, the engine exists, no overlap) is
-- schedule.check's to say.
local luafile = require("pushcap.luafile")
local schedule = require("pushcap.schedule")

local M = {}

-- Days in the order people read a week (schedule.DAYS is os.date's order).
M.WEEK = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" }
local FULL = { Mon = "monday", Tue = "tuesday", Wed = "wednesday", Thu = "thursday", Fri = "friday",
               Sat = "saturday", Sun = "sunday" }
local GROUPS = {
   daily = M.WEEK, all = M.WEEK,
   weekdays = { "Mon", "Tue", "Wed", "Thu", "Fri" },
   weekend = { "Sat", "Sun" },
}

M.ORDER = { "Schedule", "Engine", "Always", "Start", "Stop", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" }
M.FIELDS = { "engine", "always", "start", "stop", "days" }

local function quote(s) return luafile.string(s) end

-- "mon,tue,fri" (any case, or monday..., daily, weekdays, weekend) to the
-- set of day keys, or nil and a message.
function M.parse_days(text)
   local set, any = {}, false
   for word in (text .. ","):gmatch("([^,]*),") do
      local w = word:lower():match("^%s*(.-)%s*$")
      local found = GROUPS[w]
      if not found then
         for _, d in ipairs(M.WEEK) do
            if w == d:lower() or w == FULL[d] then found = { d } end
         end
      end
      if not found then
         return nil, ("days %s: %s is not a day (use mon,tue,wed,thu,fri,sat,sun, daily, weekdays "
            .. "or weekend)"):format(quote(text), quote(word))
      end
      for _, d in ipairs(found) do set[d] = true end
      any = true
   end
   if not any then return nil, "days: no day given" end
   return set
end

local function set_days(row, set)
   for _, d in ipairs(M.WEEK) do row[d] = set[d] == true end
end

local function every_day()
   local s = {}
   for _, d in ipairs(M.WEEK) do s[d] = true end
   return s
end

local TRUE = { ["true"] = true, yes = true, on = true, ["1"] = true }
local FALSE = { ["false"] = true, no = true, off = true, ["0"] = true }

-- ---- the file ------------------------------------------------------------------

-- An empty schedule: nothing runs.
function M.empty() return { Schedule = {} } end

function M.env() return require("pushcap.schedule").file_env() end

-- Evaluates the schedule at path.  Returns the table, or nil, a message and
-- "missing" when there is no file.
function M.load(path)
   local t, err, why = luafile.eval(path, M.env())
   if t == nil and err then return nil, err, why end
   if type(t) ~= "table" then
      return nil, ("%s: must return a table { Schedule = { ... } }, it returned %s"):format(path, type(t))
   end
   for k in pairs(t) do
      if k ~= "Schedule" then
         return nil, ("%s: unknown top-level field %s (only Schedule): fix the file by hand")
            :format(path, tostring(k))
      end
   end
   if t.Schedule == nil then t.Schedule = {} end
   if type(t.Schedule) ~= "table" then
      return nil, ("%s: Schedule is a %s, not a list of rows: fix the file by hand"):format(path, type(t.Schedule))
   end
   return t
end

-- schedule.check's problems with the rows (empty when all are good).
function M.validate(doc)
   local _, errors = schedule.check(doc.Schedule)
   return errors
end

function M.render(doc, time)
   local s, err = luafile.serialize(doc, { order = M.ORDER })
   if not s then return nil, err end
   return luafile.header(time) .. "\nreturn " .. s .. "\n"
end

-- ---- rows ----------------------------------------------------------------------

-- The row numbered text ("2" or "#2"), or nil and a message.
function M.row(doc, text)
   local n = tonumber((tostring(text):match("^#?(%d+)$")))
   local rows = doc.Schedule
   if not n then return nil, ("%s is not a row number (see: fmadiocli show analytics schedule)"):format(quote(text)) end
   if n < 1 or n > #rows then
      return nil, ("no row %d: the schedule has %d row%s"):format(n, #rows, #rows == 1 and "" or "s")
   end
   return n
end

-- Adds a row.  o: { engine =, always = true } or { engine =, start =,
-- stop =, days = "mon,tue" (nil: every day) }.
function M.new(doc, o)
   if o.always and (o.start or o.stop or o.days) then
      return nil, "--always is a 24/7 row: it takes no --start, --stop or --days"
   end
   if not o.always and not (o.start and o.stop) then
      return nil, "give --always, or --start HH:MM and --stop HH:MM (and optionally --days)"
   end
   local row = { Engine = o.engine }
   if o.always then
      row.Always = true
   else
      row.Start, row.Stop = o.start, o.stop
      local set = every_day()
      if o.days then
         local err
         set, err = M.parse_days(o.days)
         if not set then return nil, err end
      end
      set_days(row, set)
   end
   local rows = doc.Schedule
   rows[#rows + 1] = row
   return row, #rows
end

-- Changes fields of row n: pairs is { {field, value}, ... } with fields
-- engine, always, start, stop, days.
function M.mod(doc, n, pairs_)
   local row = doc.Schedule[n]
   if type(row) ~= "table" then return nil, ("row %d is a %s, not a row: fix the file by hand"):format(n, type(row)) end
   for _, p in ipairs(pairs_) do
      local field, value = p[1]:lower(), p[2]
      if field == "engine" then
         row.Engine = value
      elseif field == "always" then
         local low = value:lower()
         if TRUE[low] then
            row.Always = true
            row.Start, row.Stop = nil, nil
            for _, d in ipairs(M.WEEK) do row[d] = nil end
         elseif FALSE[low] then
            row.Always = nil
         else
            return nil, ("always %s: is not true or false"):format(quote(value))
         end
      elseif field == "start" or field == "stop" then
         -- a window row: no longer 24/7
         if row.Always then
            row.Always = nil
            local any = false
            for _, d in ipairs(M.WEEK) do any = any or row[d] ~= nil end
            if not any then set_days(row, every_day()) end
         end
         row[field == "start" and "Start" or "Stop"] = value
      elseif field == "days" then
         local set, err = M.parse_days(value)
         if not set then return nil, err end
         set_days(row, set)
      else
         return nil, ("unknown field %s (fields: %s)"):format(quote(p[1]), table.concat(M.FIELDS, ", "))
      end
   end
   return row
end

function M.del(doc, n)
   return table.remove(doc.Schedule, n)
end

-- ---- showing -------------------------------------------------------------------

local function days_text(row)
   local on, given = {}, false
   for _, d in ipairs(M.WEEK) do
      if row[d] ~= nil then given = true end
      if row[d] == true then on[#on + 1] = d end
   end
   if not given or #on == 7 then return "daily" end
   if #on == 0 then return "(none)" end
   return table.concat(on, ",")
end

local function cell(v)
   if v == nil then return "-" end
   return tostring(v)
end

-- Lines for `show analytics schedule`: one row each, numbered as the mod
-- and del commands take them.
function M.show(doc)
   local L = { ("%-4s %-24s %-5s %-9s %-9s %s"):format("row", "engine", "24/7", "start", "stop", "days") }
   for n, row in ipairs(doc.Schedule) do
      if type(row) ~= "table" then
         L[#L + 1] = ("%-4d (a %s, not a row)"):format(n, type(row))
      elseif row.Always then
         L[#L + 1] = ("%-4d %-24s %-5s"):format(n, cell(row.Engine), "yes")
      else
         L[#L + 1] = ("%-4d %-24s %-5s %-9s %-9s %s"):format(n, cell(row.Engine), "no", cell(row.Start),
            cell(row.Stop), days_text(row))
      end
   end
   if #doc.Schedule == 0 then L[#L + 1] = "(no rows: no analytics engine runs)" end
   return L
end

return M
