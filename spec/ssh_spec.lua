-- pcap_split --ssh against a real sshd on 127.0.0.1 with keys made here.
local H = require("spec.helper")
local num = require("pushcap.num")

local function start_sshd(d)
   local port = 20000 + math.random(0, 9999)
   H.sh(("mkdir -p /run/sshd && cd %s && ssh-keygen -q -t ed25519 -N '' -f hostkey && ssh-keygen -q -t ed25519 -N '' -f userkey "
      .. "&& cp userkey.pub authorized_keys"):format(d))
   local f = assert(io.open(d .. "/sshd_config", "w"))
   f:write(("Port %d\nListenAddress 127.0.0.1\nHostKey %s/hostkey\nAuthorizedKeysFile %s/authorized_keys\n"
      .. "PidFile %s/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
      .. "PasswordAuthentication no\n"):format(port, d, d, d))
   f:close()
   local out, rc = H.sh(("/usr/sbin/sshd -f %s/sshd_config -E %s/sshd.log"):format(d, d))
   assert.are.equal(0, rc, out)
   -- sshd forks into the background once it listens
   for _ = 1, 50 do
      if H.slurp(d .. "/sshd.pid") then break end
      H.sh("sleep 0.1")
   end
   return port
end

describe("pcap_split --ssh", function()
   local d, port
   setup(function()
      d = H.tmpdir()
      port = start_sshd(d)
   end)
   teardown(function()
      local pid = H.slurp(d .. "/sshd.pid")
      if pid then H.sh("kill " .. pid:match("%d+")) end
      H.cleanup()
   end)

   it("streams each split to <name>.pending on the remote host, then renames it with mv", function()
      H.sh("mkdir -p " .. d .. "/remote\\ dir")
      local t0 = H.T0
      H.write_pcap(d .. "/in.pcap", { { ts = t0 }, { ts = t0 + num.i64(50e9) } })
      local opts = ("-p %d -i %s/userkey -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
         :format(port, d)
      local out, rc = H.sh(("cd %s && TZ=UTC %s pcap_split -o o_ --split-time 60e9 --pipe-cmd 'gzip -c' --filename-suffix .pcap.gz --ssh \"%s root@127.0.0.1:%s/remote dir/dev-\" < in.pcap")
         :format(d, H.env, opts, d))
      assert.are.equal(0, rc, out)
      assert.are.same({ "dev-o_20231114_221300.pcap.gz", "dev-o_20231114_221400.pcap.gz" }, H.ls(d .. "/remote dir"))
      assert.matches("Cmd %[ssh root@127.0.0.1 mv ", out)
      local n = H.sh(("zcat '%s/remote dir/dev-o_20231114_221300.pcap.gz' | tcpdump --count -r - 2>/dev/null"):format(d))
      assert.matches("1 packet", n)
   end)
end)
