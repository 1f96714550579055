-- pace_pcap.lua IN: copy a nanosecond pcap to stdout at the pace of its
-- timestamps, so a writer reading it sees traffic arrive as if live.
-- Test tool (run under build/fmadiolua); flushes after every packet.
local C = require("pushcap.ffi")

local f = assert(io.open(arg[1], "rb"))
local data = f:read("*a")
f:close()
assert(#data >= 24 and data:byte(1) == 0x4d and data:byte(4) == 0xa1, "want a little-endian ns pcap")
io.stdout:write(data:sub(1, 24))
io.stdout:flush()

local function u32(p)
   local a, b, c, d = data:byte(p, p + 3)
   return a + b * 256 + c * 65536 + d * 16777216
end

local pos, t0, wall0 = 25, nil, C.pc_mono_ns()
while pos + 16 <= #data + 1 do
   local ts = u32(pos) * 1e9 + u32(pos + 4)
   local len = u32(pos + 8)
   t0 = t0 or ts
   local due = wall0 + (ts - t0)
   local now = C.pc_mono_ns()
   if due > now then C.pc_nap_ns(due - now) end
   io.stdout:write(data:sub(pos, pos + 15 + len))
   io.stdout:flush()
   pos = pos + 16 + len
end
