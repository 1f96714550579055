-- pushcap.ffi: the C primitives of runtime/pushcap.h, as ffi.C.
-- The host returns the header text itself, so the declarations Lua sees
-- are always the ones the C side was compiled with.
local ffi = require("ffi")

local ok = pcall(function() return ffi.C.pc_cdef end)
if not ok then
   ffi.cdef("const char *pc_cdef(void);")
   local found = pcall(function() return ffi.C.pc_cdef end)
   if not found then
      error("pushcap: the pc_* primitives are missing; run this script with fmadiolua (build/fmadiolua), not plain luajit", 2)
   end
   ffi.cdef(ffi.string(ffi.C.pc_cdef()))
end

return ffi.C
