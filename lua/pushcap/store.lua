-- pushcap.store: the capture store as Lua sees it: the ring (C, store.c)
-- plus the list of named captures (small text files beside it).
--
-- <dir>/ring.dat                the chunk ring (docs/store-format.md)
-- <dir>/captures/<id>.meta      one capture: key=value lines, replaced atomically
-- <dir>/captures/<id>.idx       its chunk index, appended by the writer
local ffi = require("ffi")
local C = require("pushcap.ffi")
local num = require("pushcap.num")
local paths = require("pushcap.paths")

local M = {}
local Store = {}
Store.__index = Store

M.DEFAULT_CHUNK = 256 * 1024

local function errstr(rc) return ffi.string(C.pc_strerror(rc)) end

function M.dir() return paths.capture end

-- Creates a store of about size bytes; returns true or nil, message.
function M.create(dir, size, chunk_size)
   chunk_size = chunk_size or M.DEFAULT_CHUNK
   local nslots = math.floor(size / chunk_size)
   local rc = C.pc_mkdirs(dir .. "/captures", 488)
   if rc < 0 then return nil, ("cannot create %s/captures: %s"):format(dir, errstr(rc)) end
   local err = ffi.new("char[512]")
   rc = C.pc_store_create(dir, chunk_size, nslots, err, 512)
   if rc < 0 then return nil, ffi.string(err) end
   return true
end

function M.exists(dir) return C.pc_exists(dir .. "/ring.dat") == 1 end

-- Opens the store in dir (writer = true takes the writer lock).
function M.open(dir, writer)
   local err = ffi.new("char[512]")
   local h = C.pc_store_open(dir, writer and 1 or 0, err, 512)
   if h == nil then return nil, ffi.string(err) end
   local s = setmetatable({ dir = dir, h = ffi.gc(h, C.pc_store_close), writer = writer }, Store)
   return s
end

function Store:close()
   if self.h then
      C.pc_store_close(ffi.gc(self.h, nil))
      self.h = nil
   end
end

function Store:info()
   local i = ffi.new("pc_store_info")
   C.pc_store_info_get(self.h, i)
   return i
end

-- ---- capture metadata ------------------------------------------------------
local meta_fields = { "id", "name", "first_chunk", "end_chunk", "created_ns", "closed", "first_ts",
                      "last_ts", "packets", "bytes", "kernel_drops", "truncated", "linktype", "source" }

local function meta_path(dir, id) return ("%s/captures/%d.meta"):format(dir, id) end
function M.idx_path(dir, id) return ("%s/captures/%d.idx"):format(dir, id) end

function M.write_meta(dir, m)
   local path = meta_path(dir, m.id)
   local tmp = path .. ".tmp"
   local f, err = io.open(tmp, "w")
   if not f then return nil, err end
   for _, k in ipairs(meta_fields) do
      if m[k] ~= nil then f:write(k, "=", type(m[k]) == "cdata" and num.str(m[k]) or tostring(m[k]), "\n") end
   end
   f:close()
   local rc = C.pc_rename(tmp, path)
   if rc < 0 then return nil, errstr(rc) end
   return true
end

local numeric = { id = true, first_chunk = true, end_chunk = true, closed = true, packets = true,
                  bytes = true, kernel_drops = true, truncated = true, linktype = true }

local function read_meta(path)
   local f = io.open(path)
   if not f then return nil end
   local m = {}
   for line in f:lines() do
      local k, v = line:match("^([%w_]+)=(.*)$")
      if k then
         if numeric[k] then m[k] = tonumber(v)
         elseif k == "created_ns" or k == "first_ts" or k == "last_ts" then m[k] = num.parse(v)
         else m[k] = v end
      end
   end
   f:close()
   if not m.id or not m.name then return nil end
   return m
end

-- Every capture, oldest first, with its state against the ring:
-- expired = "no" | "partly" | "yes".
function Store:captures()
   local list = {}
   for _, f in ipairs(require("pushcap.proc").listdir(self.dir .. "/captures") or {}) do
      local id = f:match("^(%d+)%.meta$")
      if id then list[#list + 1] = read_meta(self.dir .. "/captures/" .. f) end
   end
   table.sort(list, function(a, b) return a.id < b.id end)
   local info = self:info()
   local oldest = tonumber(info.oldest)
   for _, m in ipairs(list) do
      local fd = C.pc_open_read(M.idx_path(self.dir, m.id))
      m.chunks = 0
      if fd >= 0 then
         m.chunks = tonumber(C.pc_store_idx_count(fd))
         local e = ffi.new("pc_store_idx")
         if m.chunks > 0 and C.pc_store_idx_get(fd, 0, e) == 0 then m.first_ts = num.i64(e.ts_first) end
         if m.chunks > 0 and C.pc_store_idx_get(fd, m.chunks - 1, e) == 0 then m.last_ts = num.i64(e.ts_last) end
         C.pc_close(fd)
      end
      local last = m.first_chunk + m.chunks - 1
      m.active = info.active_capture == m.id
      if m.chunks == 0 or last >= oldest and m.first_chunk >= oldest then m.expired = "no"
      elseif last < oldest then m.expired = "yes"
      else m.expired = "partly" end
   end
   return list
end

function Store:find(name)
   for _, m in ipairs(self:captures()) do
      if m.name == name then return m end
   end
end

function Store:active()
   local id = self:info().active_capture
   if id == 0 then return nil end
   for _, m in ipairs(self:captures()) do
      if m.id == id then return m end
   end
end

-- ---- writing a capture -------------------------------------------------------
-- Starts a new named capture; returns its metadata table.
function Store:begin_capture(name, source)
   local info = self:info()
   local m = { id = tonumber(info.next_capture_id), name = name, first_chunk = tonumber(info.head),
               created_ns = C.pc_now_ns(), closed = 0, packets = 0, bytes = 0, kernel_drops = 0,
               truncated = 0, source = source }
   local fd = C.pc_open_append(M.idx_path(self.dir, m.id))
   if fd < 0 then return nil, ("cannot create %s: %s"):format(M.idx_path(self.dir, m.id), errstr(fd)) end
   local ok, err = M.write_meta(self.dir, m)
   if not ok then
      C.pc_close(fd)
      return nil, err
   end
   local rc = C.pc_store_begin_capture(self.h, m.id, fd)
   if rc < 0 then
      C.pc_close(fd)
      return nil, errstr(rc)
   end
   self.cur, self.cur_fd = m, fd
   return m
end

-- Records the capture's totals so far in its metadata.
function Store:update_meta(extra)
   local m = self.cur
   if not m then return end
   local st = ffi.new("pc_store_stats")
   C.pc_store_writer_stats(self.h, st)
   m.packets = tonumber(st.packets) - (self.base_packets or 0)
   m.bytes = tonumber(st.bytes_wire) - (self.base_bytes or 0)
   m.truncated = tonumber(st.truncated) - (self.base_truncated or 0)
   for k, v in pairs(extra or {}) do m[k] = v end
   return M.write_meta(self.dir, m)
end

function Store:end_capture(extra)
   local m = self.cur
   if not m then return true end
   local rc = C.pc_store_end_capture(self.h)
   if rc < 0 then return nil, errstr(rc) end
   m.closed = 1
   m.end_chunk = tonumber(self:info().head)
   self:update_meta(extra)
   C.pc_close(self.cur_fd)
   local st = ffi.new("pc_store_stats")
   C.pc_store_writer_stats(self.h, st)
   self.base_packets, self.base_bytes, self.base_truncated = tonumber(st.packets), tonumber(st.bytes_wire),
      tonumber(st.truncated)
   self.cur, self.cur_fd = nil, nil
   return true
end

-- A writer that died left its capture open: index what it committed and
-- mark it closed.  Called by the next writer before it starts.
function Store:recover()
   local fixed = {}
   for _, m in ipairs(self:captures()) do
      if m.closed == 0 then
         local path = M.idx_path(self.dir, m.id)
         local rfd = C.pc_open_read(path)
         local have = rfd >= 0 and tonumber(C.pc_store_idx_count(rfd)) or 0
         if rfd >= 0 then C.pc_close(rfd) end
         local fd = C.pc_open_append(path)
         if fd >= 0 then
            C.pc_store_reindex(self.h, m.id, m.first_chunk + have, fd)
            C.pc_close(fd)
         end
         m.closed = 1
         m.end_chunk = tonumber(self:info().head)
         M.write_meta(self.dir, m)
         fixed[#fixed + 1] = m.name
      end
   end
   return fixed
end

-- ---- reading a capture ---------------------------------------------------------
-- start: "begin" | "head" | ts (int64 epoch ns) | { chunk = id, rec = n }
-- (a saved position: record n of chunk id)
function Store:reader(m, start)
   local fd = C.pc_open_read(M.idx_path(self.dir, m.id))
   local start_id = m.first_chunk
   if start == "head" then
      start_id = tonumber(self:info().head)
   elseif type(start) == "cdata" and fd >= 0 then
      start_id = tonumber(C.pc_store_seek_time(fd, m.first_chunk, start))
   elseif type(start) == "table" then
      start_id = start.chunk
   end
   local r = C.pc_store_reader_open(self.h, m.id, m.first_chunk, start_id, fd)
   if r == nil then return nil, "out of memory" end
   if type(start) == "table" and (start.rec or 0) > 0 then C.pc_store_reader_skip(r, start.rec) end
   return { h = ffi.gc(r, function(x)
      C.pc_store_reader_close(x)
      if fd >= 0 then C.pc_close(fd) end
   end), idx_fd = fd, capture = m }
end

return M
