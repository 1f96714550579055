-- CURL mode beyond FTP: push uploads through libcurl to sftp:// (sshd on
-- 127.0.0.1, key login) and to http:// PUT (rclone serve webdav), and the
-- files there equal a File target's from the same push, byte for byte.
local H = require("spec.helper")
local S = require("spec.servers")

-- A root with a store holding capture "cap", and a push config with a File
-- reference target plus the given CURL target.
local function setup(d, curl_target)
   local env = ("export PUSHCAP_ROOT=%s PATH=%s:%s:%s/analytics:$PATH TZ=UTC &&"):format(d, H.build, H.bin, H.root)
   local function sh(cmd) return H.sh(("cd %s && %s %s"):format(d, env, cmd)) end
   local out, rc = H.sh(("%s/pcapgen -p isp -n 12000 -s 300 -S 6 -o %s/in.pcap"):format(H.build, d))
   assert.are.equal(0, rc, out)
   out, rc = sh("stream_capture --store-size 64M --import in.pcap --name cap")
   assert.are.equal(0, rc, out)
   H.sh("mkdir -p " .. d .. "/opt/fmadio/etc")
   local f = assert(io.open(d .. "/opt/fmadio/etc/push_pcap.lua", "w"))
   f:write(([[return { Target = {
      { Desc = "ref", Path = "%s/ref/all-", Split = "--split-time 60e9", FileName = "--filename-epoch-sec" },
      { Desc = "remote", Mode = "CURL", Path = %q, CurlArgs = %q,
        Split = "--split-time 60e9", FileName = "--filename-epoch-sec" },
   } }]]):format(d, curl_target.path, curl_target.args))
   f:close()
   return sh
end

-- The remote directory holds exactly the reference files, byte for byte.
local function same_files(ref_dir, remote_dir)
   local ref = H.ls(ref_dir)
   assert.is_true(#ref >= 4, "only " .. #ref .. " reference splits")
   assert.are.same(ref, H.ls(remote_dir))
   for _, n in ipairs(ref) do
      assert.is_true(H.slurp(ref_dir .. "/" .. n) == H.slurp(remote_dir .. "/" .. n), n .. " differs from the reference")
   end
end

describe("curl arguments", function()
   local curlopts = require("pushcap.curlopts")
   it("map ssh keys, a key passphrase and CA files to libcurl options, and mask the secrets", function()
      local lines = assert(curlopts.parse("--key /k/id --pubkey /k/id.pub --pass 'p w' --cacert /c.pem -u a:b"))
      assert.are.same({ "ssh_key=/k/id", "ssh_pubkey=/k/id.pub", "key_passwd=p w", "cacert=/c.pem", "user=a:b" },
         (function() local t = {} for l in lines:gmatch("[^\n]+") do t[#t + 1] = l end return t end)())
      local masked = curlopts.mask("--key /k/id --pass 'p w' -u a:b")
      assert.are.equal("--key /k/id --pass *** -u ***", masked)
      assert.are.equal("--pass ***", curlopts.mask("--pass 'unbalanced"))
   end)
end)

describe("push in CURL mode", function()
   after_each(H.cleanup)

   it("uploads to sftp:// with a key, to .pending then renamed", function()
      local d = H.tmpdir()
      local sshd = S.sshd(d)
      finally(function() sshd.stop() end)
      local sh = setup(d, {
         path = ("sftp://root@127.0.0.1:%d%s/sftp/push/all-"):format(sshd.port, d),
         args = ("--key %s --pubkey %s.pub -k --ftp-create-dirs --connect-timeout 10"):format(sshd.key, sshd.key),
      })
      local out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(0, rc, out)
      same_files(d .. "/ref", d .. "/sftp/push")
      local log = H.slurp(d .. "/mnt/store0/log/push_remote.cur")
      assert.matches("%(libcurl%)", log)
      assert.matches("rename", log)
   end)

   it("uploads to http:// with PUT, straight to the final name", function()
      local d = H.tmpdir()
      local dav = S.webdav(d .. "/dav", d, 120)
      finally(function() dav.stop() end)
      local sh = setup(d, {
         path = ("http://127.0.0.1:%d/all-"):format(dav.port),
         args = "-u pcap:secret-word --connect-timeout 10",
      })
      local out, rc = sh("push_pcap.lua --offline cap")
      assert.are.equal(0, rc, out)
      same_files(d .. "/ref", d .. "/dav")
      -- the password is in no log
      local logs = H.sh("cat " .. d .. "/mnt/store0/log/*")
      assert.is_nil(logs:find("secret-word", 1, true), "a log shows the password")
      assert.matches("%-u %*%*%*", logs)
   end)
end)
