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

   it("installs systemd units that point at the installed tools, and the installed scheduler finds its engines", function()
      local d = H.tmpdir()
      local out, rc = H.sh(("make -s -C %s install PREFIX=%s/inst"):format(H.root, d))
      assert.are.equal(0, rc, out)
      for _, unit in ipairs({ "pushcap-scheduler.service", "pushcap-capture@.service" }) do
         local text = H.slurp(("%s/inst/etc_ro/systemd/%s"):format(d, unit))
         assert.matches("ExecStart=" .. (d .. "/inst/bin/"):gsub("%p", "%%%0"), text)
         assert.is_nil(text:match("/opt/fmadio"), unit .. " still names /opt/fmadio")
      end
      -- systemd's own check: the units parse and their commands are executable
      H.sh(("cp %s/inst/etc_ro/systemd/pushcap-capture@.service %s/pushcap-capture@lo.service"):format(d, d))
      out, rc = H.sh(("systemd-analyze verify %s/inst/etc_ro/systemd/pushcap-scheduler.service %s/pushcap-capture@lo.service")
         :format(d, d))
      assert.are.equal(0, rc, out)
      assert.is_nil(out:match("not executable"), out)
      -- the installed scheduler runs engines from the installed analytics/
      H.sh(("mkdir -p %s/root/opt/fmadio/etc"):format(d))
      local f = assert(io.open(d .. "/root/opt/fmadio/etc/analytics_schedule.lua", "w"))
      f:write('return { Schedule = { { Engine = "push_pcap", Always = true } } }\n')
      f:close()
      out, rc = H.sh(("PATH=/usr/bin:/bin %s/inst/bin/analytics_scheduler --root %s/root --check"):format(d, d))
      assert.are.equal(0, rc, out)
      assert.matches("row 1: push_pcap 24/7 %(" .. (d .. "/inst/analytics/push_pcap"):gsub("%p", "%%%0") .. "%)", out)
   end)

   it("honours DESTDIR", function()
      local d = H.tmpdir()
      local out, rc = H.sh(("make -s -C %s install DESTDIR=%s/stage PREFIX=/opt/fmadio"):format(H.root, d))
      assert.are.equal(0, rc, out)
      assert.are.equal("#!/opt/fmadio/bin/fmadiolua\n", H.sh("head -n 1 " .. d .. "/stage/opt/fmadio/bin/pcap_split"))
   end)
end)
