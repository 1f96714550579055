-- pushcap.luafile: Lua data files as the appliance's fmadio_config writes
-- them (push_pcap.lua, analytics_schedule.lua): evaluate one, turn a table
-- back into Lua source with bracketed string keys in a stable order, and
-- replace a file atomically.
--
-- The writer is generic: it knows nothing about the fields it writes, only
-- an optional list of key names that come first, in that order.
local C = require("pushcap.ffi")
local proc = require("pushcap.proc")

local M = {}

-- ---- reading ---------------------------------------------------------------

-- Evaluates the Lua file at path in env (a table; the chunk's globals) and
-- returns what it returned, or nil and a message naming the file.  A file
-- that does not exist gives nil, message, "missing".
function M.eval(path, env)
   local f, oerr = io.open(path, "rb")
   if not f then
      if C.pc_exists(path) == 0 then return nil, ("%s: no such file"):format(path), "missing" end
      return nil, tostring(oerr)
   end
   local text = f:read("*a")
   f:close()
   return M.eval_text(text, path, env)
end

-- Evaluates source text (named path in messages) in env.
function M.eval_text(text, path, env)
   local chunk, err = loadstring(text, "@" .. path)
   if not chunk then return nil, err end
   setfenv(chunk, env)
   local ok, ret = pcall(chunk)
   if not ok then
      local msg = tostring(ret)
      if msg:sub(1, #path + 1) ~= path .. ":" then msg = path .. ": " .. msg end
      return nil, msg
   end
   return ret
end

-- ---- writing ---------------------------------------------------------------

local function is_identifier(s)
   return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end
M.is_identifier = is_identifier

-- A Lua string literal for s: double quotes, and escapes for the backslash,
-- the quote and control bytes, so every line of the file stays one line.
function M.string(s)
   local named = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
   return '"' .. s:gsub('[%c\\"]', function(c)
      return named[c] or ("\\%03d"):format(c:byte())
   end) .. '"'
end

-- Source for a number, exact: integers as digits, others with the fewest
-- significant digits that read back to the same double.  nil and a reason
-- for NaN and infinities, which have no literal.
function M.number(n)
   if n ~= n then return nil, "NaN has no Lua literal" end
   if n == math.huge or n == -math.huge then return nil, "an infinite number has no Lua literal" end
   if n % 1 == 0 and math.abs(n) < 2 ^ 63 then return ("%.0f"):format(n) end
   for digits = 15, 17 do
      local s = ("%." .. digits .. "g"):format(n)
      if tonumber(s) == n then return s end
   end
   return ("%.17g"):format(n)
end

-- Source for a table key: ["Desc"], [3], [true].
local function key_source(k)
   if type(k) == "string" then return "[" .. M.string(k) .. "]" end
   if type(k) == "number" then
      local s, err = M.number(k)
      if not s then return nil, err end
      return "[" .. s .. "]"
   end
   if type(k) == "boolean" then return "[" .. tostring(k) .. "]" end
   return nil, "a " .. type(k) .. " key cannot be written"
end
M.key = key_source

-- The keys of t that are not part of its list (1..#t), ordered: those in
-- order first, in that order, then the rest by type and value.
local function hash_keys(t, n, rank)
   local keys = {}
   for k in pairs(t) do
      if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
   end
   table.sort(keys, function(a, b)
      local ra, rb = rank[a], rank[b]
      if ra or rb then
         if ra and rb then return ra < rb end
         return ra ~= nil
      end
      if type(a) ~= type(b) then return type(a) < type(b) end
      if type(a) == "boolean" then return tostring(a) < tostring(b) end
      return a < b
   end)
   return keys
end

local function where(path)
   return path == "" and "the value" or path
end

-- Lua source for v.  opts.order: key names written first, in that order,
-- in every table; opts.indent: the indent of the line v starts on (used
-- for the lines that follow); opts.step: one level of indent (4 spaces).
-- Tables are written one field a line with the "=" aligned; a list part is
-- written without keys.  Returns the text, or nil and a message naming
-- the field that cannot be written (a function, a cycle, NaN).
function M.serialize(v, opts)
   opts = opts or {}
   local rank = {}
   for i, k in ipairs(opts.order or {}) do rank[k] = i end
   local step = opts.step or "    "
   local seen = {}

   local function write(x, indent, path)
      local t = type(x)
      if t == "string" then return M.string(x) end
      if t == "boolean" then return tostring(x) end
      if t == "number" then
         local s, err = M.number(x)
         if not s then return nil, where(path) .. ": " .. err end
         return s
      end
      if t == "cdata" then
         -- 64-bit integers (60LL) print as valid LuaJIT literals
         local s = tostring(x)
         if s:match("^%-?%d+U?LL$") then return s end
         return nil, where(path) .. ": a cdata value cannot be written"
      end
      if t ~= "table" then return nil, ("%s: a %s cannot be written"):format(where(path), t) end
      if seen[x] then return nil, where(path) .. ": the table contains itself" end
      if getmetatable(x) ~= nil then return nil, where(path) .. ": a table with a metatable cannot be written" end
      seen[x] = true
      local n = #x
      for i = 1, n do
         if x[i] == nil then n = i - 1 break end
      end
      local keys = hash_keys(x, n, rank)
      if n == 0 and #keys == 0 then
         seen[x] = nil
         return "{}"
      end
      local inner = indent .. step
      local lines = { "{" }
      for i = 1, n do
         local s, err = write(x[i], inner, ("%s[%d]"):format(path, i))
         if not s then return nil, err end
         lines[#lines + 1] = inner .. s .. ","
      end
      local ks, width = {}, 0
      for i, k in ipairs(keys) do
         local s, err = key_source(k)
         if not s then return nil, ("%s: %s"):format(where(path), err) end
         ks[i] = s
         if #s > width then width = #s end
      end
      for i, k in ipairs(keys) do
         local sub = path == "" and tostring(k) or (is_identifier(k) and path .. "." .. k
            or ("%s[%s]"):format(path, type(k) == "string" and M.string(k) or tostring(k)))
         local s, err = write(x[k], inner, sub)
         if not s then return nil, err end
         lines[#lines + 1] = ("%s%-" .. width .. "s = %s,"):format(inner, ks[i], s)
      end
      lines[#lines + 1] = indent .. "}"
      seen[x] = nil
      return table.concat(lines, "\n")
   end

   return write(v, opts.indent or "", opts.path or "")
end

-- The appliance's first line: "-- autogenerated Thu Jun  9 20:07:14 2022
-- from fmadio_config".
function M.header(time)
   return "-- autogenerated " .. os.date("%a %b %e %H:%M:%S %Y", time) .. " from fmadio_config"
end

function M.is_autogenerated(text)
   return text:match("^%-%- autogenerated [^\n]* from fmadio_config\n") ~= nil
end

-- Deep equality of two plain values (what eval returns), for checking that
-- written text reads back as the table it was written from.
function M.equal(a, b)
   if type(a) ~= type(b) then return false end
   if type(a) ~= "table" then return a == b end
   for k, v in pairs(a) do
      if not M.equal(v, b[k]) then return false end
   end
   for k in pairs(b) do
      if a[k] == nil then return false end
   end
   return true
end

local function dirname(path)
   local d = path:match("^(.*)/[^/]*$")
   if d == nil then return "." end
   if d == "" then return "/" end
   return d
end
M.dirname = dirname

-- The whole file, or nil when it cannot be read.
local function read_all(path)
   local f = io.open(path, "rb")
   if not f then return nil end
   local s = f:read("*a")
   f:close()
   return s
end
M.read_all = read_all
M.read = read_all

-- fsync(2) of a file or directory.
local function fsync(path)
   local rc = C.pc_fsync_path(path)
   if rc < 0 then return nil, ("cannot sync %s: %s"):format(path, proc.errstr(rc)) end
   return true
end

-- Replaces the file at path with text: written to a temporary file in the
-- same directory, flushed to disk, then renamed over path, so a reader sees
-- the old file or the new one and never a part.  The new file keeps the old
-- one's permissions and owner (a new file is 0600: push configs hold
-- credentials), and a symlink keeps pointing where it did: its target is
-- replaced.  Creates the directory when it is missing.  Returns true, or
-- nil and a message (path is then as it was).
function M.replace(path, text)
   local ffi = require("ffi")
   local real = ffi.new("char[4096]")
   if C.pc_realpath(path, real, 4096) == 0 then path = ffi.string(real) end
   local dir = dirname(path)
   if C.pc_exists(dir) == 0 then
      local rc = C.pc_mkdirs(dir, 493)
      if rc < 0 then return nil, ("cannot create %s: %s"):format(dir, proc.errstr(rc)) end
   end
   local mode, uid, gid = ffi.new("int[1]", 384), ffi.new("int[1]", -1), ffi.new("int[1]", -1)
   local had = C.pc_file_owner(path, mode, uid, gid) == 0
   local tmp = ("%s/.%s.tmp%d"):format(dir, path:match("[^/]*$"), C.pc_getpid())
   C.pc_unlink(tmp)   -- a leftover of a killed run
   -- created with the final permissions before a byte is written
   local fd = C.pc_open_new(tmp, mode[0])
   if fd < 0 then return nil, ("cannot create %s: %s"):format(tmp, proc.errstr(fd)) end
   local function fail(msg)
      C.pc_unlink(tmp)
      return nil, msg
   end
   if had and (uid[0] ~= C.pc_getuid() or gid[0] ~= C.pc_getgid()) then
      local rc = C.pc_chown(tmp, uid[0], gid[0])
      if rc < 0 then
         C.pc_close(fd)
         return fail(("cannot give %s the owner of %s: %s"):format(tmp, path, proc.errstr(rc)))
      end
   end
   local wrc = C.pc_write_all(fd, text, #text)
   C.pc_close(fd)
   if wrc < 0 then return fail(("cannot write %s: %s"):format(tmp, proc.errstr(wrc))) end
   if read_all(tmp) ~= text then return fail(("%s does not read back as written"):format(tmp)) end
   local synced, serr = fsync(tmp)
   if not synced then return fail(serr) end
   local rc = C.pc_rename(tmp, path)
   if rc < 0 then return fail(("cannot rename %s to %s: %s"):format(tmp, path, proc.errstr(rc))) end
   -- the rename itself is durable once the directory is synced
   local dsynced, derr = fsync(dir)
   if not dsynced then return nil, ("%s was replaced, but syncing %s failed: %s"):format(path, dir, derr) end
   return true
end

return M
