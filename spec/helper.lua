-- Shared by the specs: temp dirs, running commands, making and reading
-- captures with exact timestamps.  Specs run under build/fmadiolua, so the
-- C primitives are at hand through ffi.
local ffi = require("ffi")
local C = require("pushcap.ffi")
local num = require("pushcap.num")

local H = {}
H.root = os.getenv("PWD")
H.bin = H.root .. "/bin"
H.build = H.root .. "/build"
H.testdata = os.getenv("PUSHCAP_TESTDATA") or (H.root .. "/../shared/testdata")
-- every command runs with the appliance paths moved under a scratch root,
-- so no test touches /opt or /mnt
local scratch = io.popen("mktemp -d /tmp/pushcap-root.XXXXXX"):read("*l")
H.scratch_root = scratch
H.env = ("PUSHCAP_ROOT=%s PATH=%s:%s:$PATH"):format(scratch, H.build, H.bin)

local tmps = {}
function H.tmpdir()
   local p = io.popen("mktemp -d /tmp/pushcap-spec.XXXXXX")
   local d = p:read("*l")
   p:close()
   tmps[#tmps + 1] = d
   return d
end

function H.cleanup()
   for _, d in ipairs(tmps) do os.execute("rm -rf '" .. d .. "'") end
   tmps = {}
   os.execute("rm -rf '" .. scratch .. "'/*")
end

-- Runs a shell line (test code only); returns output (stdout+stderr) and rc.
function H.sh(cmd)
   local p = io.popen("{ " .. cmd .. " ; } 2>&1; echo \"__rc=$?\"")
   local out = p:read("*a")
   p:close()
   local rc = tonumber(out:match("__rc=(%d+)%s*$"))
   return out:gsub("__rc=%d+%s*$", ""), rc
end

-- Same, with stdout and stderr kept apart.
function H.sh2(cmd)
   local errf = os.tmpname()
   local p = io.popen("{ " .. cmd .. " ; } 2>" .. errf .. "; echo \"__rc=$?\"")
   local out = p:read("*a")
   p:close()
   local f = io.open(errf)
   local err = f:read("*a")
   f:close()
   os.remove(errf)
   local rc = tonumber(out:match("__rc=(%d+)%s*$"))
   return out:gsub("__rc=%d+%s*$", ""), err, rc
end

function H.pcap_split(args, input)
   return H.sh(("cd %s && %s pcap_split %s < %s"):format(H.cwd or ".", H.env, args, input))
end

local function u16(x) return string.char(x % 256, math.floor(x / 256) % 256) end
local function u32(x)
   return string.char(x % 256, math.floor(x / 256) % 256, math.floor(x / 65536) % 256,
      math.floor(x / 16777216) % 256)
end
local function u64(x)
   x = type(x) == "string" and num.parse(x) or num.i64(x)
   local lo = tonumber(x % 4294967296LL)
   local hi = tonumber(x / 4294967296LL)
   return u32(lo) .. u32(hi)
end
H.u16, H.u32, H.u64 = u16, u32, u64

-- A frame of n bytes (Ethernet, IPv4 ethertype, a counter in the payload so
-- every packet is distinct).
function H.frame(n, tag)
   local body = string.rep(string.char((tag or 0) % 256), math.max(n - 14, 0))
   return ("\0\1\2\3\4\5\6\7\8\9\10\11\8\0" .. body):sub(1, n)
end

-- pkts: { {ts=<int64|number|string>, len=n, wire=n}, ... }
-- opts.us: microsecond pcap; opts.be: big-endian
function H.write_pcap(path, pkts, opts)
   opts = opts or {}
   local f = assert(io.open(path, "wb"))
   local function w32(x)
      local s = u32(x)
      if opts.be then s = s:reverse() end
      return s
   end
   local function w16(x)
      local s = u16(x)
      if opts.be then s = s:reverse() end
      return s
   end
   f:write(w32(opts.us and 0xa1b2c3d4 or 0xa1b23c4d), w16(2), w16(4), w32(0), w32(0), w32(65535),
      w32(opts.linktype or 1))
   for k, p in ipairs(pkts) do
      local ts = type(p.ts) == "string" and num.parse(p.ts) or num.i64(p.ts)
      local sec, sub = num.split(ts)
      if opts.us then sub = math.floor(sub / 1000) end
      local len = p.len or 64
      f:write(w32(sec), w32(sub), w32(len), w32(p.wire or len), H.frame(len, k))
   end
   f:close()
end

-- chunks: list of lists of records {ts=, len=, wire=, port=, flag=};
-- an empty list is a keep-alive chunk.
function H.write_fmad(path, chunks)
   local f = assert(io.open(path, "wb"))
   f:write(u32(0x1337bab3), u16(2), u16(4), u32(0), u32(0), u32(65535), u32(1))
   local k = 0
   for _, recs in ipairs(chunks) do
      local body, wire, cap = {}, 0, 0
      for _, r in ipairs(recs) do
         k = k + 1
         local len = r.len or 64
         local w = r.wire or len
         body[#body + 1] = u64(r.ts) .. u16(len) .. u16(w) .. string.char(r.port or 0, r.flag or 0) .. u16(0)
            .. H.frame(len, k)
         wire, cap = wire + w, cap + len
      end
      body = table.concat(body)
      local first = recs[1] and recs[1].ts or 0
      local last = recs[#recs] and recs[#recs].ts or 0
      f:write(u16(#recs), u16(0), u32(wire), u32(cap), u32(#body), u64(first), u64(last), u64(0),
         u16(0), u16(0), u16(0), u16(0), body)
   end
   f:close()
end

-- Reads a capture with the project's reader: returns a list of packets
-- {ts="<ns>", caplen=, wire=, data=} (NOPs included, with wire == 0), the
-- reader's error text (or nil) and the format.
function H.read(path)
   local fd = C.pc_open_read(path)
   assert(fd >= 0, "cannot open " .. path)
   local err = ffi.new("char[512]")
   local r = C.pc_reader_open(fd, err, 512)
   if r == nil then
      C.pc_close(fd)
      return nil, ffi.string(err)
   end
   local pkts = ffi.new("pc_pkt[256]")
   local out, rerr = {}, nil
   while true do
      local n = C.pc_reader_next(r, pkts, 256)
      if n < 0 then rerr = ffi.string(C.pc_reader_error(r)) end
      if n <= 0 then break end
      for i = 0, n - 1 do
         local p = pkts[i]
         out[#out + 1] = { ts = num.str(p.ts), caplen = p.caplen, wire = p.wirelen,
                           data = ffi.string(p.data, p.caplen), port = p.port,
                           flags = bit.band(p.flags, 0x7f) }  -- PC_PKT_RAW is a reader detail
      end
   end
   local fmt = C.pc_reader_format(r)
   C.pc_reader_close(r)
   C.pc_close(fd)
   return out, rerr, fmt
end

-- Fields of a TSV line, taken literally (the testdata has no quoting).
function H.fields(line)
   local t = {}
   for f in (line .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = f end
   return t
end

-- A pc_pkt array over packets {data=, caplen=, wire=, port=, flags=, tsn=}
-- (H.read's, or made by hand); the returned table keeps the Lua strings the
-- array points into alive while it is used.
function H.batch(pkts)
   local arr = ffi.new("pc_pkt[?]", math.max(#pkts, 1))
   for i, p in ipairs(pkts) do
      local a = arr[i - 1]
      a.data = ffi.cast("const uint8_t *", p.data)
      a.caplen, a.wirelen = p.caplen or #p.data, p.wire or p.caplen or #p.data
      a.port, a.flags, a.ts = p.port or 0, p.flags or 0, p.tsn or 0
   end
   return { arr = arr, n = #pkts, pkts = pkts }
end

function H.ls(dir)
   local p = io.popen("ls -1 '" .. dir .. "' 2>/dev/null")
   local t = {}
   for l in p:lines() do t[#t + 1] = l end
   p:close()
   return t
end

H.slurp = require("pushcap.luafile").read_all

-- Seconds (ns int64) helper: T0 is 2023-11-14 22:13:20 UTC.
H.T0 = num.parse("1700000000000000000")
function H.t(sec_offset_ns) return H.T0 + num.i64(sec_offset_ns) end

return H
