-- pcap_split --ssh against a real sshd on 127.0.0.1 with keys made here.
local H = require("spec.helper")
local num = require("pushcap.num")

local S = require("spec.servers")

describe("pcap_split --ssh", function()
   local d, sshd
   setup(function()
      d = H.tmpdir()
      sshd = S.sshd(d)
   end)
   teardown(function()
      if sshd then sshd.stop() end
      H.cleanup()
   end)

   it("streams each split to <name>.pending on the remote host, then renames it with mv", function()
      H.sh("mkdir -p " .. d .. "/remote\\ dir")
      local t0 = H.T0
      H.write_pcap(d .. "/in.pcap", { { ts = t0 }, { ts = t0 + num.i64(50e9) } })
      local opts = sshd.opts
      local out, rc = H.sh(("cd %s && TZ=UTC %s pcap_split -o o_ --split-time 60e9 --pipe-cmd 'gzip -c' --filename-suffix .pcap.gz --ssh \"%s root@127.0.0.1:%s/remote dir/dev-\" < in.pcap")
         :format(d, H.env, opts, d))
      assert.are.equal(0, rc, out)
      assert.are.same({ "dev-o_20231114_221300.pcap.gz", "dev-o_20231114_221400.pcap.gz" }, H.ls(d .. "/remote dir"))
      assert.matches("Cmd %[ssh root@127.0.0.1 mv ", out)
      local n = H.sh(("zcat '%s/remote dir/dev-o_20231114_221300.pcap.gz' | tcpdump --count -r - 2>/dev/null"):format(d))
      assert.matches("1 packet", n)
   end)
end)
