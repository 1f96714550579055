-- pushcap.units: numbers as users write them on FMADIO command lines
-- ("60e9", "1e9", "100M", "60s") turned into exact integers.
local M = {}

local scale = {
   [""] = 1,
   K = 1e3, M = 1e6, G = 1e9, T = 1e12,           -- sizes are decimal, as fmadiocli
   ns = 1, us = 1e3, ms = 1e6, s = 1e9, m = 60e9, h = 3600e9, d = 86400e9,
}

-- Returns a non-negative integer (a Lua number, exact up to 2^53) or nil and
-- a reason.  kind is "time" (unit suffixes s/m/h) or "size" (K/M/G).
function M.parse(text, kind)
   if type(text) ~= "string" and type(text) ~= "number" then
      return nil, "expected a number"
   end
   text = tostring(text)
   local num, unit = text:match("^%s*([%d%.eE%+]+)%s*(%a*)%s*$")
   local v = num and tonumber(num)
   if not v then return nil, "'" .. text .. "' is not a number" end
   if unit ~= "" then
      local ok = kind == "time" and (unit == "ns" or unit == "us" or unit == "ms" or unit == "s"
         or unit == "m" or unit == "h" or unit == "d")
         or kind == "size" and (unit == "K" or unit == "M" or unit == "G" or unit == "T")
      if not ok then return nil, "'" .. text .. "' has an unknown unit '" .. unit .. "'" end
      v = v * scale[unit]
   end
   if v ~= v or v < 0 or v >= 2^63 then return nil, "'" .. text .. "' is out of range" end
   return math.floor(v + 0.5)
end

return M
