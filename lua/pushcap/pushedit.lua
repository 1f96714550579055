-- pushcap.pushedit: the changes fmadiocli makes to a push config.
--
-- It works on the evaluated table (what push_pcap.lua returns): finds a
-- target by name, turns a command-line value ("1m", "100M", "HHMMSS") into
-- the field the appliance stores ("--split-time 60000000000"), adds and
-- removes targets, and writes the table back as fmadio_config does.  It
-- does not judge a whole config: config.validate does that.
local config = require("pushcap.config")
local luafile = require("pushcap.luafile")
local naming = require("pushcap.naming")
local paths = require("pushcap.paths")
local units = require("pushcap.units")

local M = {}

M.DEFAULT_SPLIT = "--split-time 60000000000"

-- ---- values ------------------------------------------------------------------
-- Each parser takes the text given on the command line and returns true and
-- the value to store (nil removes the field), or false and a reason.

local function text(s) return true, s end

local function nonempty(s)
   if not s:match("%S") then return false, "cannot be empty" end
   return true, s
end

local TRUE = { ["true"] = true, yes = true, on = true, ["1"] = true }
local FALSE = { ["false"] = true, no = true, off = true, ["0"] = true }

local function boolean(s)
   local low = s:lower()
   if s == "" then return true, nil end
   if TRUE[low] then return true, true end
   if FALSE[low] then return true, false end
   return false, "is not true or false (also yes/no, on/off, 1/0; \"\" removes the field)"
end

local function count(v) return ("%.0f"):format(v) end

local function split_by(kind, option, example)
   return function(s)
      local v, err = units.parse(s, kind)
      if not v then return false, err .. " (e.g. " .. example .. ")" end
      if v == 0 then return false, "must be more than 0" end
      return true, option .. " " .. count(v)
   end
end

local function positive_ns(s)
   if s == "" then return true, nil end
   local v, err = units.parse(s, "time")
   if not v then return false, err .. " (e.g. 30s, 5m, 300e9)" end
   if v == 0 then return false, "must be more than 0" end
   return true, v
end

local function cpu(s)
   if s == "" then return true, nil end
   local v = tonumber(s)
   if not s:match("^%s*%d+%s*$") or not v then return false, "is not a CPU number (0, 1, 2, ...)" end
   return true, v
end

-- Mode names as the appliance spells them, from what config.lua accepts.
M.MODES = {}
local mode_name = {}
for _, m in ipairs(config.MODES) do
   local spelled = m == "file" and "File" or m:upper()
   M.MODES[#M.MODES + 1] = spelled
   mode_name[m] = spelled
end

local function mode(s)
   if s == "" then return true, nil end
   local m = mode_name[s:lower()]
   if not m then
      return false, ("is not a mode (use %s; case does not matter)"):format(table.concat(M.MODES, ", "))
   end
   return true, m
end

-- fmadiocli's filename keywords: pcap_split's --filename-<mode> without
-- "tstr-" (epoch-sec, HHMMSS, ...), from the names naming.lua knows.
M.FILENAME_KEYWORDS = {}
local filename_option = {}
for _, m in ipairs(naming.modes) do
   if m ~= "strftime" then
      local kw = m:gsub("^tstr%-", "")
      M.FILENAME_KEYWORDS[#M.FILENAME_KEYWORDS + 1] = kw
      filename_option[kw:lower()] = "--filename-" .. m
      filename_option[m:lower()] = "--filename-" .. m
   end
end

local function filename(s)
   if s == "" then return true, nil end
   if s:match("^%-%-filename%-") then return true, s end  -- the option itself, e.g. --filename-strftime '%H'
   local opt = filename_option[s:lower()]
   if not opt then
      return false, ("is not a file name format (use %s, or a pcap_split option such as "
         .. "\"--filename-strftime '%%Y%%m%%d_%%H%%M%%S'\")"):format(table.concat(M.FILENAME_KEYWORDS, ", "))
   end
   return true, opt
end

-- ---- fields --------------------------------------------------------------------

-- Per-target fields, in the order help lists them.
M.TARGET_FIELDS = {
   { "name", "Desc", nonempty, "the target's name; its logs are push_<name>_..." },
   { "mode", "Mode", mode, "File, NULL, RCLONE, CURL, SSH or LXC" },
   { "path", "Path", text, "output prefix, rclone remote:path/prefix, URL, or the LXC ring" },
   { "split-time", "Split", split_by("time", "--split-time", "60s, 1m, 1h, 60e9"),
     "split every T: 60s, 1m, 1h, or ns (60e9); stored as --split-time <ns>" },
   { "split-size", "Split", split_by("size", "--split-byte", "100M, 1G, 1e9"),
     "split every N bytes: 100M, 1G (decimal), 1e9; stored as --split-byte <n>" },
   { "split", "Split", nonempty, "the Split field verbatim, e.g. \"--split-time 60e9 --roll-period 86400e9\"" },
   { "filename", "FileName", filename, "epoch-sec, epoch-sec-startend, epoch-msec, epoch-usec, epoch-nsec, "
     .. "HHMM, HHMMSS, HHMMSS_TZ, HHMMSS_NS, HHMMSS_SUB, or a --filename-... option" },
   { "filter-bpf", "FilterBPF", text, "tcpdump filter on the decapsulated packet; \"\" for none" },
   { "filter-frame", "FilterFrame", text, "capture port / FCS filter, e.g. \"port 1 and fcs-ok\"; \"\" for none" },
   { "pipe-cmd", "PipeCmd", text, "compressor every file passes through, e.g. \"zstd -c -T8\"" },
   { "suffix", "FileSuffix", text, "file name suffix, e.g. .pcap.zst (no dot is added)" },
   { "split-cmd", "SplitCmd", text, "extra pcap_split options, e.g. \"-Z fmadio\"" },
   { "cpu", "CPU", cpu, "CPU the target's worker is pinned to; \"\" for the default" },
   { "post", "Post", text, "command run on every finished file, as <cmd> <file>" },
   { "script-new", "ScriptNew", text, "command run before each new file" },
   { "stream-cat", "StreamCat", text, "extra stream_cat options, e.g. --ring-timeout-exit" },
   { "chunked", "Chunked", boolean, "true/false: stream_cat's chunked transport" },
   { "follow-start", "FollowStart", boolean, "true/false for this target; \"\" uses the top-level value" },
   { "decap", "Decap", boolean, "true/false for this target; \"\" uses the top-level value" },
   { "timeout-ring", "TimeoutRing", positive_ns, "how long output may stall: 30s, 5m, ns; \"\" for the top-level value" },
   { "output", "Output", text, "original or decap: which frame is written" },
   { "compress", "Compress", text, "auto or external: may PipeCmd run in-process" },
   { "curl-args", "CurlArgs", text, "extra curl options for CURL mode" },
   { "ssh-args", "SshArgs", text, "ssh options for SSH mode (-i key, -p port, -o ...)" },
}

-- Top-level fields (`set`).
M.TOP_FIELDS = {
   { "follow-start", "FollowStart", boolean, "true: start at the beginning of the active capture" },
   { "decap", "Decap", boolean, "true: de-encapsulate before filtering" },
   { "timeout-ring", "TimeoutRing", positive_ns, "how long output may stall: 30s, 5m, ns" },
}

-- Field order in the written file: the appliance's, then pushcap's.
M.TARGET_ORDER = { "Desc", "Mode", "Path", "Split", "SplitCmd", "PipeCmd", "FileSuffix", "FileName",
                   "FilterBPF", "FilterFrame", "Decap", "FollowStart", "Chunked", "CPU", "StreamCat",
                   "ScriptNew", "Post", "TimeoutRing", "Output", "Compress", "CurlArgs", "SshArgs" }
M.TOP_ORDER = { "FollowStart", "Decap", "TimeoutRing" }

local function squash(s) return (s:lower():gsub("[%-_]", "")) end

local function index(list, aliases)
   local by = {}
   for _, f in ipairs(list) do
      local field = { name = f[1], key = f[2], parse = f[3], help = f[4] }
      by[squash(f[1])] = field
      if not by[squash(f[2])] then by[squash(f[2])] = field end
   end
   for alias, name in pairs(aliases) do by[alias] = by[name] end
   return by
end
local target_field = index(M.TARGET_FIELDS, { filesuffix = "suffix" })
local top_field = index(M.TOP_FIELDS, {})

local function names(list)
   local out = {}
   for _, f in ipairs(list) do out[#out + 1] = f[1] end
   return table.concat(out, ", ")
end

-- The field called name (CLI spelling or the config key, any case), or nil
-- and a message.  top: a top-level field.
function M.field(name, top)
   local f = (top and top_field or target_field)[squash(name)]
   if f then return f end
   if top and target_field[squash(name)] then
      return nil, ("'%s' is not a top-level field (top-level: %s); for one target use "
         .. "mod <name> %s <value>"):format(name, names(M.TOP_FIELDS), name)
   end
   return nil, ("unknown field '%s' (fields: %s)"):format(name, names(top and M.TOP_FIELDS or M.TARGET_FIELDS))
end

local function quote(s) return luafile.string(s) end

-- Sets one field of tbl from its command-line text.  Returns true, or nil
-- and a message naming the field, the value and the reason.
local function assign(tbl, name, value, top)
   local f, ferr = M.field(name, top)
   if not f then return nil, ferr end
   local ok, v = f.parse(value)
   if not ok then return nil, ("%s %s: %s"):format(f.name, quote(value), v) end
   tbl[f.key] = v
   return true
end

-- ---- the config table ------------------------------------------------------------

-- A new config, as the appliance starts one.
function M.empty()
   return { FollowStart = false, Decap = true, Target = {} }
end

-- The environment config.load evaluates a config in.
function M.env() return setmetatable({}, { __index = _G }) end

-- Evaluates the config at path.  Returns the table, or nil, a message and
-- "missing" when there is no file.
function M.load(path)
   local t, err, why = luafile.eval(path, M.env())
   if t == nil and err then return nil, err, why end
   if type(t) ~= "table" then
      return nil, ("%s: must return a table (end the file with `return Config`), it returned %s")
         :format(path, type(t))
   end
   return t
end

local function target_list(cfg)
   if cfg.Target == nil then cfg.Target = {} end
   if type(cfg.Target) ~= "table" then
      return nil, ("Target is a %s, not a list of targets; fix the file by hand"):format(type(cfg.Target))
   end
   return cfg.Target
end

-- The position of the target called name, or nil and a message.
function M.find(cfg, name)
   local list, err = target_list(cfg)
   if not list then return nil, err end
   for i, t in ipairs(list) do
      if type(t) == "table" and t.Desc == name then return i end
   end
   local known = {}
   for _, t in ipairs(list) do
      if type(t) == "table" and type(t.Desc) == "string" then known[#known + 1] = t.Desc end
   end
   return nil, ("no target named %s (targets: %s)"):format(quote(name),
      #known > 0 and table.concat(known, ", ") or "none")
end

local function check_unique(cfg, name, except)
   for i, t in ipairs(cfg.Target) do
      if i ~= except and type(t) == "table" and t.Desc == name then
         return nil, ("name %s: target #%d already has that name (names must be unique: they name the logs)")
            :format(quote(name), i)
      end
   end
   return true
end

-- The Path a new target gets: <root>/mnt/remote0/push/<name>-, the remote
-- share the appliance's documentation pushes to.
function M.default_path(name)
   return (paths.root or "") .. "/mnt/remote0/push/" .. name .. "-"
end

-- Applies field/value pairs ({ {field, value}, ... }) to target t, then
-- checks the name is still unique.
local function apply(cfg, t, pos, pairs_)
   for _, p in ipairs(pairs_) do
      local ok, err = assign(t, p[1], p[2])
      if not ok then return nil, err end
   end
   if type(t.Desc) == "string" then return check_unique(cfg, t.Desc, pos) end
   return true
end

-- Adds a target called name with the defaults, then the given fields.
function M.new(cfg, name, pairs_)
   local list, err = target_list(cfg)
   if not list then return nil, err end
   local ok, nerr = nonempty(name)
   if not ok then return nil, "name " .. quote(name) .. ": " .. nerr end
   local t = { Desc = name, Mode = "File", Path = M.default_path(name), Split = M.DEFAULT_SPLIT,
               FileName = config.DEFAULT_FILENAME, FilterBPF = "", FilterFrame = "" }
   local pos = #list + 1
   local aok, aerr = apply(cfg, t, pos, pairs_ or {})
   if not aok then return nil, aerr end
   list[pos] = t
   return t, pos
end

-- Changes fields of the target called name.
function M.mod(cfg, name, pairs_)
   local pos, err = M.find(cfg, name)
   if not pos then return nil, err end
   local ok, aerr = apply(cfg, cfg.Target[pos], pos, pairs_)
   if not ok then return nil, aerr end
   return cfg.Target[pos], pos
end

-- Removes the target called name.
function M.del(cfg, name)
   local pos, err = M.find(cfg, name)
   if not pos then return nil, err end
   return table.remove(cfg.Target, pos), pos
end

-- Sets top-level fields.
function M.set(cfg, pairs_)
   for _, p in ipairs(pairs_) do
      local ok, err = assign(cfg, p[1], p[2], true)
      if not ok then return nil, err end
   end
   return true
end

-- ---- checking, writing, showing ------------------------------------------------

-- config.validate's errors and warnings for the table, named after path.
function M.validate(cfg, path)
   local _, errors, warnings = config.validate(cfg, path)
   return errors, warnings
end

-- Appends "<prefix>[key] = value" for every key of t not in skip, in a
-- stable order: what a hand-written file had that fmadiocli does not edit.
local function assign_extra(L, prefix, t, skip, order)
   local keys = {}
   for k in pairs(t) do
      if not skip[k] then keys[#keys + 1] = k end
   end
   table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) < type(b) end
      if type(a) == "boolean" then return tostring(a) < tostring(b) end
      return a < b
   end)
   for _, k in ipairs(keys) do
      local ks, kerr = luafile.key(k)
      if not ks then return nil, ("%s: %s"):format(prefix, kerr) end
      local vs, verr = luafile.serialize(t[k], { order = order, path = prefix .. ks })
      if not vs then return nil, verr end
      L[#L + 1] = ("%s%s = %s"):format(prefix, ks, vs)
   end
   return true
end

-- The file text fmadio_config writes for cfg: the header, the top-level
-- fields, one table.insert per target.  Returns text or nil and a message.
function M.render(cfg, time)
   local L = { luafile.header(time), "local Config = {}" }
   local top, width = {}, #"Target"
   for _, k in ipairs(M.TOP_ORDER) do
      if cfg[k] ~= nil then
         top[#top + 1] = k
         width = math.max(width, #k)
      end
   end
   for _, k in ipairs(top) do
      local s, err = luafile.serialize(cfg[k], { path = k })
      if not s then return nil, err end
      L[#L + 1] = ("Config.%-" .. width .. "s = %s"):format(k, s)
   end
   -- fields config.lua does not know are kept as they were
   local known = { Target = true }
   for _, k in ipairs(M.TOP_ORDER) do known[k] = true end
   local ok, err = assign_extra(L, "Config", cfg, known, {})
   if not ok then return nil, err end
   L[#L + 1] = ("Config.%-" .. width .. "s = {}"):format("Target")
   local list = cfg.Target or {}
   local n = 0
   while list[n + 1] ~= nil do n = n + 1 end
   for i = 1, n do
      local s, serr = luafile.serialize(list[i], { order = M.TARGET_ORDER, path = ("Target[%d]"):format(i) })
      if not s then return nil, serr end
      L[#L + 1] = "table.insert(Config.Target,\n" .. s .. ")"
   end
   local inlist = {}
   for i = 1, n do inlist[i] = true end
   ok, err = assign_extra(L, "Config.Target", list, inlist, M.TARGET_ORDER)
   if not ok then return nil, err end
   L[#L + 1] = "return Config"
   return table.concat(L, "\n") .. "\n"
end

local function shown(v)
   if v == nil then return "(not set)" end
   if type(v) == "string" then return quote(v) end
   if type(v) == "number" then return luafile.number(v) or tostring(v) end
   return tostring(v)
end

-- the fields show prints for every target, set or not, as the appliance's
-- fmadiocli does
local SHOW_FIRST = { "Mode", "Path", "Split", "FileName", "FilterBPF", "FilterFrame" }

-- Lines for `show push-pcap`: FollowStart, Decap, then every target as
-- "[name] #n" and its fields.
-- A field's value as printed: passwords in URLs and curl arguments hidden,
-- as push_pcap.lua --check and the logs hide them.
function M.masked(field, v)
   if type(v) ~= "string" then return v end
   if field == "CurlArgs" or field == "curl-args" then return require("pushcap.curlopts").mask(v) end
   if field == "Path" or field == "path" then return require("pushcap.sink").mask_text(v) end
   return v
end

function M.show(cfg)
   local L = {}
   local function row(indent, k, v) L[#L + 1] = ("%s%-11s : %s"):format(indent, k, v) end
   row("", "FollowStart", cfg.FollowStart == nil and "false (default)" or shown(cfg.FollowStart))
   row("", "Decap", cfg.Decap == nil and "true (default)" or shown(cfg.Decap))
   if cfg.TimeoutRing ~= nil then row("", "TimeoutRing", shown(cfg.TimeoutRing)) end
   local always = {}
   for _, k in ipairs(SHOW_FIRST) do always[k] = true end
   for i, t in ipairs(type(cfg.Target) == "table" and cfg.Target or {}) do
      L[#L + 1] = ""
      if type(t) ~= "table" then
         L[#L + 1] = ("[?] #%d is a %s, not a target"):format(i, type(t))
      else
         L[#L + 1] = ("[%s] #%d"):format(tostring(t.Desc), i)
         for _, k in ipairs(SHOW_FIRST) do row("    ", k, shown(M.masked(k, t[k]))) end
         for _, k in ipairs(M.TARGET_ORDER) do
            if k ~= "Desc" and not always[k] and t[k] ~= nil then row("    ", k, shown(M.masked(k, t[k]))) end
         end
         local rest = {}
         for k in pairs(t) do
            local known = false
            for _, o in ipairs(M.TARGET_ORDER) do known = known or o == k end
            if not known then rest[#rest + 1] = tostring(k) end
         end
         table.sort(rest)
         for _, k in ipairs(rest) do row("    ", k, shown(t[k]) .. " (not a push field)") end
      end
   end
   return L
end

return M
