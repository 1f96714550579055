-- pushcap.num: 64-bit nanosecond timestamps.  Epoch ns (~1.7e18) do not fit
-- a double exactly, so they stay int64 cdata and are printed through here.
local ffi = require("ffi")

local M = {}
local i64 = ffi.typeof("int64_t")
M.NS = i64(1000000000)

function M.i64(x) return i64(x) end

-- Decimal text of an integer (number or 64-bit cdata), without the LL suffix.
function M.str(x)
   if type(x) == "number" then return string.format("%.0f", x) end
   return (tostring(i64(x)):gsub("[UL]+$", ""))
end

-- Parses a decimal or float notation ("60e9") into int64; nil if bad.
function M.parse(s)
   if type(s) ~= "string" then return nil end
   if s:match("^%d+$") then
      s = s:gsub("^0+(%d)", "%1")
      if #s > 19 or (#s == 19 and s > "9223372036854775807") then return nil end
      local v = i64(0)
      for d in s:gmatch("%d") do v = v * 10 + (d:byte() - 48) end
      return v
   end
   local v = tonumber(s)
   if not v or v ~= v or v < 0 or v >= 9.2e18 then return nil end
   return i64(v)
end

-- Whole seconds and the ns remainder of a ns timestamp.
function M.split(ts)
   ts = i64(ts)
   local sec = ts / M.NS
   local sub = ts - sec * M.NS
   if sub < 0 then sec, sub = sec - 1, sub + M.NS end
   return tonumber(sec), tonumber(sub)
end

return M
