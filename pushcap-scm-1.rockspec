-- pushcap is built with make (a C host plus Lua modules); this rockspec
-- lets LuaRocks drive that build and install the tree under its prefix.
rockspec_format = "3.0"
package = "pushcap"
version = "scm-1"
source = { url = "git+file:///pushcap" }
description = {
   summary = "Open implementation of FMADIO's Automatic Push PCAP: split, compress and deliver captures",
   detailed = [[
      A LuaJIT host (fmadiolua) with C primitives for reading pcap, pcapng and
      the FMAD chunked stream, splitting by packet time or size, and writing
      nanosecond pcap; pcap_split and the push tools are Lua scripts on them.
   ]],
   license = "MIT",
}
dependencies = { "lua == 5.1" }
build_dependencies = {}
test_dependencies = { "busted" }
build = {
   type = "make",
   build_variables = { CFLAGS = "$(CFLAGS)" },
   install_variables = { PREFIX = "$(PREFIX)" },
}
test = { type = "command", command = "make test" }
