-- make install lays out the appliance tree, and the installed tools run.
local H = require("spec.helper")

describe("make install", function()
   after_each(H.cleanup)

   it("installs bin/, lua/, etc_ro/ under PREFIX and the installed pcap_split runs", function()
      local d = H.tmpdir()
      local out, rc = H.sh(("make -s -C %s install PREFIX=%s/inst"):format(H.root, d))
      assert.are.equal(0, rc, out)
      for _, f in ipairs({ "bin/fmadiolua", "bin/pcap_split", "bin/pcapgen", "lua/pushcap/split.lua",
                           "etc_ro/push_pcap.lua.basic" }) do
         assert.is_true(H.sh(("test -e %s/inst/%s && echo yes"):format(d, f)):match("yes") ~= nil, f)
      end
      assert.are.equal("#!" .. d .. "/inst/bin/fmadiolua\n", H.sh("head -n 1 " .. d .. "/inst/bin/pcap_split"))
      H.write_pcap(d .. "/in.pcap", { { ts = H.T0 } })
      -- run by its shebang, with the checkout off PATH
      out, rc = H.sh(("cd %s && PATH=/usr/bin:/bin TZ=UTC %s/inst/bin/pcap_split -o o_ --split-time 60e9 < in.pcap")
         :format(d, d))
      assert.are.equal(0, rc, out)
      local made = {}
      for _, f in ipairs(H.ls(d)) do if f:match("^o_") then made[#made + 1] = f end end
      assert.are.same({ "o_20231114_221300.pcap" }, made)
   end)

   it("honours DESTDIR", function()
      local d = H.tmpdir()
      local out, rc = H.sh(("make -s -C %s install DESTDIR=%s/stage PREFIX=/opt/fmadio"):format(H.root, d))
      assert.are.equal(0, rc, out)
      assert.are.equal("#!/opt/fmadio/bin/fmadiolua\n", H.sh("head -n 1 " .. d .. "/stage/opt/fmadio/bin/pcap_split"))
   end)
end)
