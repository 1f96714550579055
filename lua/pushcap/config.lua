-- pushcap.config: push_pcap.lua, the push configuration.
--
-- The file is a Lua script returning a table, evaluated as the appliance
-- does (a fresh environment that reads _G, so os.date and loops work).
-- load() evaluates it, checks every field of every target, and resolves
-- each target into what the push engine runs: the pcap_split argv built in
-- the appliance's order, its parsed options, the filters, the hooks.
-- Every problem is reported, one line each, naming the file, the target
-- and the field.  docs/config.md describes every field.
local ffi = require("ffi")
local bit = require("bit")
local C = require("pushcap.ffi")
local splitopts = require("pushcap.splitopts")
local paths = require("pushcap.paths")
local num = require("pushcap.num")
local sink = require("pushcap.sink")
local curlopts = require("pushcap.curlopts")

local M = {}

M.DEFAULT_TIMEOUT_RING = 30e9
M.DEFAULT_FILENAME = "--filename-tstr-HHMMSS"
M.MODES = { "file", "null", "rclone", "curl", "ssh", "lxc" }

local mode_known = {}
for _, m in ipairs(M.MODES) do mode_known[m] = true end

local TOP_FIELDS = { "Target", "FollowStart", "Decap", "TimeoutRing" }
local TARGET_FIELDS = {
   -- FMADIO's
   "Desc", "Mode", "Path", "Split", "SplitCmd", "FileName", "FilterBPF", "FilterFrame", "Decap",
   "PipeCmd", "FileSuffix", "Chunked", "FollowStart", "CPU", "StreamCat", "ScriptNew", "Post",
   -- pushcap's
   "TimeoutRing", "Output", "Compress", "CurlArgs", "SshArgs",
}
local function set(list)
   local s = {}
   for _, k in ipairs(list) do s[k] = true end
   return s
end
local top_known, target_known = set(TOP_FIELDS), set(TARGET_FIELDS)

-- fields that only feed pcap_split, ignored (with a warning) in LXC mode
local PCAP_SPLIT_FIELDS = { "Split", "FileName", "SplitCmd", "PipeCmd", "FileSuffix", "ScriptNew",
                            "Post", "Compress", "CurlArgs", "SshArgs" }

-- ---- small helpers ---------------------------------------------------------

-- A value as an operator would write it in the config.
local function show(v)
   if type(v) == "string" then return ('"%s"'):format(v) end
   if type(v) == "number" then return ("%.14g"):format(v) end
   return tostring(v)
end

local function blank(s) return type(s) == "string" and not s:match("%S") end

-- Edit distance, for "did you mean" on unknown fields.
local function distance(a, b)
   local prev = {}
   for j = 0, #b do prev[j] = j end
   for i = 1, #a do
      local cur = { [0] = i }
      for j = 1, #b do
         local cost = a:byte(i) == b:byte(j) and 0 or 1
         cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
   end
   return prev[#b]
end

local function suggest(name, list)
   if type(name) ~= "string" then return nil end
   local low = name:lower()
   for _, k in ipairs(list) do
      if k:lower() == low then return k end
   end
   local best, bestd
   for _, k in ipairs(list) do
      local d = distance(low, k:lower())
      if d <= 2 and (not bestd or d < bestd) then best, bestd = k, d end
   end
   return best
end

-- Unknown keys of t, sorted so the warnings come out in a stable order.
local function unknown_keys(t, known)
   local out = {}
   for k in pairs(t) do
      if not known[k] then out[#out + 1] = k end
   end
   table.sort(out, function(a, b)
      if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
      return type(a) < type(b)
   end)
   return out
end

local function key_name(k)
   if type(k) == "string" then return k end
   return "[" .. tostring(k) .. "]"
end

-- ---- FilterFrame -----------------------------------------------------------
-- A filter on the capture metadata BPF cannot see: the capture port
-- (pc_pkt.port, 0-255) and the FCS-error flag (pc_pkt.flags bit0).
--
--   expr  := chain
--   chain := unary { ("and" | "&&") unary }  |  unary { ("or" | "||") unary }
--   unary := ("not" | "!") unary | "(" chain ")" | term
--   term  := "port" item { "," item } | "fcs-error" | "fcs-ok"
--   item  := N [ "-" M ]          (0 <= N <= M <= 255)
--
-- "and" and "or" may not be mixed in one chain without parentheses, so
-- nothing depends on a precedence rule.  Keywords are case-insensitive.

local function tokenize(s)
   local toks, i, n = {}, 1, #s
   while i <= n do
      local c = s:sub(i, i)
      if c:match("%s") then
         i = i + 1
      elseif c == "(" or c == ")" or c == "," or c == "-" then
         toks[#toks + 1] = { t = c, pos = i, text = c }
         i = i + 1
      elseif c == "!" then
         toks[#toks + 1] = { t = "not", pos = i, text = c }
         i = i + 1
      elseif s:sub(i, i + 1) == "&&" then
         toks[#toks + 1] = { t = "and", pos = i, text = "&&" }
         i = i + 2
      elseif s:sub(i, i + 1) == "||" then
         toks[#toks + 1] = { t = "or", pos = i, text = "||" }
         i = i + 2
      elseif c:match("%d") then
         local d = s:match("^%d+", i)
         toks[#toks + 1] = { t = "num", pos = i, text = d, value = tonumber(d) }
         i = i + #d
      elseif c:match("%a") then
         local w = s:match("^%a[%w%-_]*", i)
         local lw = w:lower()
         local kind = ({ ["and"] = "and", ["or"] = "or", ["not"] = "not", port = "port",
                         ["fcs-error"] = "fcs-error", ["fcs-ok"] = "fcs-ok" })[lw] or "word"
         toks[#toks + 1] = { t = kind, pos = i, text = w }
         i = i + #w
      else
         return nil, ("unexpected character '%s' at column %d"):format(c, i)
      end
   end
   return toks
end

-- Parses expr into a function of (port, fcs) where fcs is 0 or 1.
local function parse_frame(s)
   local toks, terr = tokenize(s)
   if not toks then return nil, terr end
   local k = 1
   local function peek() return toks[k] end
   local function fail(what)
      local t = toks[k]
      if t then error({ ("expected %s at column %d, found '%s'"):format(what, t.pos, t.text) }) end
      error({ ("expected %s at the end"):format(what) })
   end
   local chain

   local function number()
      local t = peek()
      if not t or t.t ~= "num" then fail("a port number (0-255)") end
      if t.value > 255 then
         error({ ("port %s at column %d is out of range (0-255)"):format(t.text, t.pos) })
      end
      k = k + 1
      return t.value
   end

   local function term()
      local t = peek()
      if not t then fail("a term (port N, port N-M, fcs-error, fcs-ok, not, '(')") end
      if t.t == "port" then
         k = k + 1
         local ranges = {}
         repeat
            local lo = number()
            local hi = lo
            if peek() and peek().t == "-" then
               k = k + 1
               hi = number()
               if hi < lo then
                  error({ ("port range %d-%d at column %d is backwards"):format(lo, hi, t.pos) })
               end
            end
            ranges[#ranges + 1] = { lo, hi }
            local more = peek() and peek().t == ","
            if more then k = k + 1 end
         until not more
         return function(port)
            for _, r in ipairs(ranges) do
               if port >= r[1] and port <= r[2] then return true end
            end
            return false
         end
      elseif t.t == "fcs-error" then
         k = k + 1
         return function(_, fcs) return fcs == 1 end
      elseif t.t == "fcs-ok" then
         k = k + 1
         return function(_, fcs) return fcs == 0 end
      end
      fail("a term (port N, port N-M, fcs-error, fcs-ok, not, '(')")
   end

   local function unary()
      local t = peek()
      if t and t.t == "not" then
         k = k + 1
         local f = unary()
         return function(p, e) return not f(p, e) end
      elseif t and t.t == "(" then
         k = k + 1
         local f = chain()
         if not peek() or peek().t ~= ")" then fail("')'") end
         k = k + 1
         return f
      end
      return term()
   end

   chain = function()
      local f = unary()
      local op
      while peek() and (peek().t == "and" or peek().t == "or") do
         local t = peek()
         if op and t.t ~= op then
            error({ ("'%s' at column %d follows '%s' in the same group: add parentheses, "
               .. "e.g. (a and b) or c"):format(t.text, t.pos, op) })
         end
         op = t.t
         k = k + 1
         local g, f0 = unary(), f
         if op == "and" then
            f = function(p, e) return f0(p, e) and g(p, e) end
         else
            f = function(p, e) return f0(p, e) or g(p, e) end
         end
      end
      return f
   end

   local ok, res = pcall(function()
      local f = chain()
      if peek() then fail("'and', 'or' or the end") end
      return f
   end)
   if not ok then
      if type(res) == "table" then return nil, res[1] end
      error(res, 0)
   end
   return res
end

-- Parses a FilterFrame expression.  Returns pred, tbl: pred(port, flags) is
-- true when a packet passes, and tbl is the same answer as a table indexed
-- tbl[port * 2 + bit0(flags)] (0..511, values true/false) for a per-packet
-- lookup.  "" (or blanks) passes everything.  On a bad expression returns
-- nil and a message.
function M.frame_filter(expr)
   if type(expr) ~= "string" then
      return nil, "must be a string such as \"port 1 and fcs-ok\", got " .. type(expr)
   end
   local f
   if blank(expr) then
      f = function() return true end
   else
      local err
      f, err = parse_frame(expr)
      if not f then return nil, err end
   end
   local tbl = {}
   for port = 0, 255 do
      tbl[port * 2] = f(port, 0) and true or false
      tbl[port * 2 + 1] = f(port, 1) and true or false
   end
   local band = bit.band
   local pred = function(port, flags)
      return tbl[port * 2 + band(flags or 0, 1)] == true
   end
   return pred, tbl
end

-- ---- one target ------------------------------------------------------------

local function append(dst, src)
   for _, w in ipairs(src) do dst[#dst + 1] = w end
end

-- The field of a target (among Split, FileName, SplitCmd) whose words hold opt.
local function field_holding(fw, opt, default)
   for _, name in ipairs({ "Split", "FileName", "SplitCmd" }) do
      for _, w in ipairs(fw[name] or {}) do
         if w == opt then return name end
      end
   end
   return default
end

local OUTPUT_MODE_OPTS = { ["--rclone"] = true, ["--curl"] = true, ["--ssh"] = true, ["--null"] = true }

local function check_target(i, t, top, problem, warn)
   local label = ("target %d"):format(i)
   if type(t.Desc) == "string" and t.Desc ~= "" then label = ('target %d "%s"'):format(i, t.Desc) end
   local function err(field, msg) problem(("%s: %s: %s"):format(label, field, msg)) end
   local function warning(field, msg)
      if field then warn(("%s: %s: %s"):format(label, field, msg)) else warn(label .. ": " .. msg) end
   end

   -- typed readers: each reports a wrong type and returns the default
   local function str(field, default)
      local v = t[field]
      if v == nil then return default end
      if type(v) ~= "string" then
         err(field, ("must be a string, got %s %s"):format(type(v), show(v)))
         return default
      end
      return v
   end
   local function boolean(field, default)
      local v = t[field]
      if v == nil then return default end
      if type(v) ~= "boolean" then
         err(field, ("must be true or false, got %s %s"):format(type(v), show(v)))
         return default
      end
      return v
   end
   local function choice(field, default, allowed)
      local v = str(field, nil)
      if v == nil or blank(v) then return default end
      local low = v:lower():match("^%s*(.-)%s*$")
      for _, a in ipairs(allowed) do
         if a == low then return a end
      end
      err(field, ("unknown value %s (use %s)"):format(show(v), table.concat(allowed, " or ")))
      return default
   end

   local tg = { index = i }

   -- Desc
   local desc = t.Desc
   if desc == nil or desc == "" then
      err("Desc", "missing (a name for the target's logs, e.g. Desc = \"all\")")
   elseif type(desc) ~= "string" then
      err("Desc", ("must be a string, got %s %s"):format(type(desc), show(desc)))
      desc = nil
   elseif not desc:match("^[%w_%-][%w%._%-]*$") then
      err("Desc", ("%s is not safe as a file name (it names the logs push_<Desc>_...): use letters, "
         .. "digits, '.', '_' and '-', and no leading '.'"):format(show(desc)))
   elseif #desc > 200 then
      err("Desc", ("is %d characters long; at most 200 (it names the log files)"):format(#desc))
   end
   tg.desc = type(desc) == "string" and desc or nil

   -- Mode
   local mode = "file"
   local mv = t.Mode
   if mv ~= nil then
      if type(mv) ~= "string" then
         err("Mode", ("must be a string, got %s %s"):format(type(mv), show(mv)))
         mode = nil
      elseif not blank(mv) then
         local low = mv:lower():match("^%s*(.-)%s*$")
         if mode_known[low] then
            mode = low
         else
            err("Mode", ("unknown mode %s (use File, NULL, RCLONE, CURL, SSH or LXC; case does not matter)")
               :format(show(mv)))
            mode = nil
         end
      end
   end
   tg.mode = mode

   -- Path
   local path = str("Path", nil)
   if path == nil or blank(path) then
      if t.Path == nil or type(t.Path) == "string" then
         if mode == "null" then
            path = ""
         else
            err("Path", "missing (" .. (mode == "lxc" and "the lxc_ring file"
               or mode == "curl" and "the URL and file prefix, e.g. ftp://host/dir/prefix"
               or mode == "ssh" and "the host and file prefix, e.g. capture@archive:/data/pcap/all-"
               or "the output prefix, e.g. /mnt/remote0/pcap/all-") .. ")")
         end
      end
      path = path or ""
   end
   tg.path = path

   -- fields shared by every mode
   local bpf = str("FilterBPF", nil)
   if bpf ~= nil and blank(bpf) then bpf = nil end
   if bpf then
      local ebuf = ffi.new("char[512]")
      local f = C.pc_bpf_compile(bpf, 1, ebuf, 512)
      if f == nil then
         err("FilterBPF", ("%s does not compile: %s"):format(show(bpf), ffi.string(ebuf)))
      else
         C.pc_bpf_free(f)
      end
   end
   tg.bpf = bpf

   local ff = str("FilterFrame", nil)
   if ff ~= nil and not blank(ff) then
      local pred, tbl = M.frame_filter(ff)
      if not pred then
         err("FilterFrame", ("%s: %s"):format(show(ff), tbl))
      else
         tg.filter_frame = { expr = ff, pred = pred, tbl = tbl }
      end
   end

   tg.decap = boolean("Decap", top.decap)
   tg.output = choice("Output", "original", { "original", "decap" })
   if tg.output == "decap" and not tg.decap then
      warning("Output", '"decap" has no effect with Decap = false: the original frame is written')
   end
   tg.compress = choice("Compress", "auto", { "auto", "external" })
   tg.chunked = boolean("Chunked", false)
   tg.follow_start = boolean("FollowStart", top.follow_start)

   local cpu = t.CPU
   if cpu ~= nil then
      if type(cpu) ~= "number" or cpu < 0 or cpu % 1 ~= 0 or cpu ~= cpu or cpu == math.huge then
         err("CPU", ("must be a non-negative integer (a CPU number), got %s %s"):format(type(cpu), show(cpu)))
         cpu = nil
      end
   end
   tg.cpu = cpu

   tg.stream_cat = str("StreamCat", "")
   tg.ring_timeout_exit = false
   for w in tg.stream_cat:gmatch("%S+") do
      if w == "--ring-timeout-exit" then tg.ring_timeout_exit = true end
   end

   local tr = t.TimeoutRing
   if tr ~= nil and (type(tr) ~= "number" or not (tr > 0) or tr == math.huge) then
      err("TimeoutRing", ("must be a positive number of ns (e.g. 5*60e9), got %s %s"):format(type(tr), show(tr)))
      tr = nil
   end
   tg.timeout_ring = tr or top.timeout_ring

   local script_new = str("ScriptNew", nil)
   if script_new and blank(script_new) then script_new = nil end
   tg.script_new = script_new
   local post = str("Post", nil)
   if post and blank(post) then post = nil end
   tg.post = post

   local pipe = str("PipeCmd", nil)
   if pipe and blank(pipe) then pipe = nil end
   local suffix = str("FileSuffix", nil)
   if suffix and blank(suffix) then suffix = nil end
   local curl_args = str("CurlArgs", "")
   local ssh_args = str("SshArgs", "")

   if mode == "lxc" then
      for _, f in ipairs(PCAP_SPLIT_FIELDS) do
         if t[f] ~= nil then warning(f, "ignored in LXC mode (packets go straight to the ring at Path)") end
      end
      tg.argv, tg.opts, tg.res = nil, nil, nil
      return tg
   end

   if suffix and not suffix:match("^%.") then
      warning("FileSuffix", ('%s does not start with \'.\': it follows the time string directly '
         .. '(e.g. ..._221300%s)'):format(show(suffix), suffix))
   end
   if t.CurlArgs ~= nil and mode ~= "curl" then
      warning("CurlArgs", "ignored: only CURL mode uses it")
   end
   if t.SshArgs ~= nil and mode ~= "ssh" then
      warning("SshArgs", "ignored: only SSH mode uses it")
   end
   local path_ok = true
   if mode == "ssh" and path ~= "" and not path:match("^[^%s/:]+:[^%s]") then
      err("Path", ("%s is not [user@]host:/dir/prefix (SSH mode)"):format(show(path)))
      path_ok = false
   end

   -- the pcap_split words of Split, FileName, SplitCmd, each checked alone
   -- so a problem is blamed on the field that has it
   local split = str("Split", nil)
   if t.Split ~= nil and type(t.Split) ~= "string" then split = false end
   if split == nil or (split and blank(split)) then
      err("Split", 'missing (how to split, e.g. Split = "--split-time 60e9" or "--split-byte 1e9")')
      split = false
   end
   local filename = str("FileName", nil)
   if t.FileName == nil then
      warning("FileName", ("missing: using %s (pcap_split's default)"):format(M.DEFAULT_FILENAME))
      filename = M.DEFAULT_FILENAME
   elseif filename and blank(filename) then
      filename = M.DEFAULT_FILENAME
   end
   local splitcmd = str("SplitCmd", "")

   -- each field is parsed and resolved alone first, so a problem is blamed
   -- on the field that has it and problems in several fields all show
   local fw, reported = {}, {}
   local parsed = split ~= false and filename ~= nil
   for _, pair in ipairs({ { "Split", split }, { "FileName", filename }, { "SplitCmd", splitcmd } }) do
      local name, value = pair[1], pair[2]
      local function fail(msg)
         err(name, ("%s: %s"):format(show(value), msg))
         parsed = false
      end
      if type(value) == "string" then
         local w, werr = splitopts.words(value)
         local o, perr
         if w then
            fw[name] = w
            o, perr = splitopts.parse(w)
         end
         local bad
         for _, word in ipairs(w or {}) do
            if OUTPUT_MODE_OPTS[word] then bad = word end
         end
         if not w then
            fail(werr)
         elseif not o then
            if perr:match("%[%-%-split%-size%]") then perr = perr .. " (pcap_split splits by size with --split-byte)" end
            fail(perr)
         elseif bad then
            fail(bad .. " selects the output mode; set Mode instead")
         elseif o.help then
            fail("--help is not a push option")
         elseif o.prefix ~= "" or field_holding({ [name] = w }, "-o") then
            fail("-o is set from Path")
         else
            if name ~= "Split" and not o.split then o.split, o.target = "time", num.i64(1) end
            local _, rerr = splitopts.resolve(o)
            if rerr then
               err(name, ("%s: %s"):format(show(value), rerr))
               reported[rerr] = true
            end
         end
      else
         parsed = false
      end
   end
   if mode == "curl" then
      local s, serr = sink.new({ mode = "curl", curl_args = curl_args, curl_url = path })
      if not s and path ~= "" then
         err("Path", serr)
         reported[serr] = true
      end
   end

   -- argv in the appliance's order: -o Path, Split, FileName, --pipe-cmd,
   -- mode flag, --filename-suffix, (--script-new), SplitCmd
   -- CURL and SSH name files by the prefix at the end of Path, as
   -- pcap_split --curl/--ssh do with -o ""
   local argv = { "-o", (mode == "curl" or mode == "ssh") and "" or path }
   append(argv, fw.Split or {})
   append(argv, fw.FileName or {})
   if pipe then append(argv, { "--pipe-cmd", pipe }) end
   if mode == "rclone" then
      argv[#argv + 1] = "--rclone"
   elseif mode == "null" then
      argv[#argv + 1] = "--null"
   elseif mode == "curl" then
      append(argv, { "--curl", curl_args, path })
   elseif mode == "ssh" then
      -- pcap_split's one --ssh value: the ssh options, then host:/dir/prefix
      append(argv, { "--ssh", (ssh_args:match("%S") and (ssh_args .. " ") or "") .. path })
   end
   if suffix then append(argv, { "--filename-suffix", suffix }) end
   if script_new then append(argv, { "--script-new", script_new }) end
   append(argv, fw.SplitCmd or {})
   tg.argv = argv

   if parsed and mode and path_ok then
      local o, perr = splitopts.parse(argv)
      if not o then
         err("Split/FileName/SplitCmd", perr)
      else
         tg.opts = o
         local r, rerr = splitopts.resolve(o)
         if r then
            tg.res = r
         elseif not reported[rerr] then
            local opt = rerr:match("^(%-%-?[%w%-]+)")
            err(opt and field_holding(fw, opt, "SplitCmd") or "Split/FileName/SplitCmd", rerr)
         end
      end
   end
   return tg
end

-- ---- the whole file --------------------------------------------------------

-- Checks an evaluated config table t (what the file returned) and resolves
-- it.  Returns cfg, errors, warnings as load() does.
function M.validate(t, path)
   path = path or "push_pcap.lua"
   local errors, warnings = {}, {}
   local function problem(msg) errors[#errors + 1] = path .. ": " .. msg end
   local function warn(msg) warnings[#warnings + 1] = path .. ": " .. msg end

   if type(t) ~= "table" then
      problem(("must return a table (end the file with `return Config`), it returned %s"):format(type(t)))
      return nil, errors, warnings
   end

   local cfg = { path = path, follow_start = false, decap = true, timeout_ring = M.DEFAULT_TIMEOUT_RING,
                 targets = {} }
   for _, f in ipairs({ "FollowStart", "Decap" }) do
      local v = t[f]
      if v ~= nil and type(v) ~= "boolean" then
         problem(("%s: must be true or false, got %s %s"):format(f, type(v), show(v)))
      end
   end
   if type(t.FollowStart) == "boolean" then cfg.follow_start = t.FollowStart end
   if type(t.Decap) == "boolean" then cfg.decap = t.Decap end
   local tr = t.TimeoutRing
   if tr ~= nil then
      if type(tr) ~= "number" or not (tr > 0) or tr == math.huge then
         problem(("TimeoutRing: must be a positive number of ns (e.g. 5*60e9), got %s %s"):format(type(tr), show(tr)))
      else
         cfg.timeout_ring = tr
      end
   end
   for _, k in ipairs(unknown_keys(t, top_known)) do
      local hint = suggest(k, TOP_FIELDS)
      if target_known[k] then
         warn(("field %s ignored at the top level: it is a per-target field"):format(key_name(k)))
      elseif hint then
         warn(("unknown field %s ignored (did you mean %s?)"):format(key_name(k), hint))
      else
         warn(("unknown field %s ignored"):format(key_name(k)))
      end
   end

   local list = t.Target
   if list == nil then
      problem("Target: missing (a list of targets: Config.Target = {} then table.insert(Config.Target, {...}))")
      return cfg, errors, warnings
   end
   if type(list) ~= "table" then
      problem(("Target: must be a list of targets, got %s %s"):format(type(list), show(list)))
      return cfg, errors, warnings
   end
   local n = 0
   for _ in ipairs(list) do n = n + 1 end
   for k in pairs(list) do
      if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
         warn(("Target[%s] ignored: targets must form a list (table.insert(Config.Target, {...}))")
            :format(type(k) == "string" and show(k) or tostring(k)))
      end
   end
   if n == 0 then
      problem("Target: empty, nothing to push (add a target with table.insert(Config.Target, {...}))")
      return cfg, errors, warnings
   end

   local top = { decap = cfg.decap, follow_start = cfg.follow_start, timeout_ring = cfg.timeout_ring }
   local seen_desc, seen_dest = {}, {}
   for i, t1 in ipairs(list) do
      if type(t1) ~= "table" then
         problem(("target %d: must be a table of fields, got %s %s"):format(i, type(t1), show(t1)))
      else
         local tg = check_target(i, t1, top, problem, warn)
         local label = tg.desc and ('target %d "%s"'):format(i, tg.desc) or ("target %d"):format(i)
         for _, k in ipairs(unknown_keys(t1, target_known)) do
            local hint = suggest(k, TARGET_FIELDS)
            if top_known[k] then
               warn(("%s: field %s ignored: it is a top-level field"):format(label, key_name(k)))
            elseif hint then
               warn(("%s: unknown field %s ignored (did you mean %s?)"):format(label, key_name(k), hint))
            else
               warn(("%s: unknown field %s ignored"):format(label, key_name(k)))
            end
         end
         if tg.desc then
            if seen_desc[tg.desc] then
               problem(('%s: Desc: "%s" is already used by target %d (Desc names the logs and must be unique)')
                  :format(label, tg.desc, seen_desc[tg.desc]))
            else
               seen_desc[tg.desc] = i
            end
         end
         if tg.mode and tg.mode ~= "null" and tg.path ~= "" then
            local fname = tg.opts and tostring(tg.opts.filename) .. tostring(tg.opts.strftime) or ""
            local key = table.concat({ tg.mode, tg.path, tg.opts and tg.opts.suffix or "", fname }, "\0")
            if seen_dest[key] then
               warn(("%s: Path: %s is also target %d's: %s"):format(label, show(tg.path), seen_dest[key],
                  tg.mode == "lxc" and "two writers share one ring" or "both write the same file names"))
            else
               seen_dest[key] = i
            end
         end
         cfg.targets[#cfg.targets + 1] = tg
      end
   end
   return cfg, errors, warnings
end

-- Evaluates the config file at path and checks it.  Returns cfg, errors,
-- warnings; errors empty means valid; cfg is nil when the file cannot be
-- read or evaluated, or does not return a table.
function M.load(path)
   local chunk, lerr = loadfile(path)
   if not chunk then
      local msg = tostring(lerr)
      if msg:match("^cannot open") then
         msg = ("%s (copy %s/push_pcap.lua.basic to start)"):format(msg, paths.etc_ro)
      end
      return nil, { msg }, {}
   end
   local env = setmetatable({}, { __index = _G })
   setfenv(chunk, env)
   local source = "@" .. path
   local ok, ret = xpcall(chunk, function(e)
      local msg = type(e) == "string" and e or ("error raised with a " .. type(e) .. " value")
      if msg:sub(1, #path + 1) == path .. ":" then return msg end
      -- an error raised inside a C function has no position: find the
      -- config's own line on the stack
      for level = 2, 50 do
         local info = debug.getinfo(level, "Sl")
         if not info then break end
         if info.source == source and info.currentline and info.currentline > 0 then
            return ("%s:%d: %s"):format(path, info.currentline, msg)
         end
      end
      return path .. ": " .. msg
   end)
   if not ok then return nil, { ret }, {} end
   return M.validate(ret, path)
end

-- ---- describe --------------------------------------------------------------

local function shell_word(w)
   if w ~= "" and w:match("^[%w%._%-/:=,+@%%]+$") then return w end
   return "'" .. w:gsub("'", "'\\''") .. "'"
end

local function seconds(ns)
   local s = ns / 1e9
   if s >= 1 and s % 1 == 0 then return ("%d s"):format(s) end
   return ("%g s"):format(s)
end

-- A file name this target would write now, as an example.
local function example_name(tg)
   local o, r = tg.opts, tg.res
   if not (o and r and o.split) then return nil end
   local s = num.i64(os.time()) * num.NS
   local e = s
   if o.split == "time" then
      s = (s / o.target) * o.target
      e = s + o.target
   end
   local prefix = o.mode == "curl" and (o.curl_url or "") or o.mode == "ssh" and (o.ssh_spec or ""):match("(%S+)$")
      or o.prefix
   return prefix .. r.timestring(s, e) .. o.suffix
end

local function split_text(tg)
   local o = tg.opts
   if not o or not o.split then return "-" end
   local n = tonumber(o.target)
   local t = o.split == "time" and ("every %s"):format(seconds(n)) or ("every %.0f bytes"):format(n)
   local name = o.filename == "strftime" and ("strftime '%s'"):format(tostring(o.strftime)) or o.filename
   local eg = example_name(tg)
   return ("by %s, %s; names %s%s"):format(o.split, t, name, eg and (", e.g. " .. eg) or "")
end

-- Lines for push_pcap.lua --check: the top-level settings, then per target
-- what will run.
function M.describe(cfg)
   local L = {}
   local function add(fmt, ...) L[#L + 1] = fmt:format(...) end
   add("config %s", cfg.path)
   add("  FollowStart %s, Decap %s, TimeoutRing %s, %d target%s", tostring(cfg.follow_start),
      tostring(cfg.decap), seconds(cfg.timeout_ring), #cfg.targets, #cfg.targets == 1 and "" or "s")
   for _, tg in ipairs(cfg.targets) do
      add("target %d %s", tg.index, tg.desc and ('"' .. tg.desc .. '"') or "(no Desc)")
      add("  mode        %s", tostring(tg.mode or "?"))
      add("  path        %s", tg.path ~= "" and sink.mask_text(tg.path) or "-")
      if tg.argv then
         local w = {}
         for k, a in ipairs(tg.argv) do
            -- user names and passwords in curl arguments and URLs stay hidden
            if tg.argv[k - 1] == "--curl" and k < #tg.argv then a = curlopts.mask(a) end
            w[k] = shell_word(sink.mask_text(a))
         end
         add("  pcap_split  %s", table.concat(w, " "))
         add("  split       %s", split_text(tg))
      else
         add("  pcap_split  - (stream_cat writes the ring)")
      end
      add("  filter      BPF %s; FilterFrame %s", tg.bpf and ('"' .. tg.bpf .. '"') or "none",
         tg.filter_frame and ('"' .. tg.filter_frame.expr .. '"') or "none")
      add("  decap       %s; writes the %s frame", tg.decap and "on" or "off",
         (tg.decap and tg.output == "decap") and "decapsulated" or "original")
      local pipe = tg.opts and tg.opts.pipe_cmd
      if tg.argv then
         if pipe then
            add("  compress    PipeCmd \"%s\" (%s)", pipe, tg.compress == "external"
               and "Compress external: always the command"
               or "Compress auto: in-process when recognised")
         else
            add("  compress    none")
         end
      end
      add("  cpu         %s", tg.cpu and tostring(tg.cpu) or "default")
      add("  start       %s; chunked %s", tg.follow_start and "start of the active capture" or "current position",
         tostring(tg.chunked))
      if tg.mode == "lxc" then
         add("  stall       TimeoutRing %s, then %s", seconds(tg.timeout_ring),
            tg.ring_timeout_exit and "restart from the current time (--ring-timeout-exit)" or "keep waiting")
      else
         add("  on failure  the split is queued and re-sent until delivered")
      end
      if tg.stream_cat ~= "" then add("  stream_cat  %s", tg.stream_cat) end
      add("  hooks       ScriptNew %s; Post %s", tg.script_new and ('"' .. tg.script_new .. '"') or "none",
         tg.post and ('"' .. tg.post .. '"') or "none")
   end
   return L
end

return M
