-- pcap_split --curl against a real FTP server (vsftpd) on 127.0.0.1: the
-- uploads run through libcurl in-process (runtime/curl_put.c), each split
-- goes to <name>.pending and is renamed with RNFR/RNTO.
local H = require("spec.helper")

local S = require("spec.servers")
local user, pass   -- of the vsftpd account spec/servers.lua makes

describe("pcap_split --curl to FTP through libcurl", function()
   local d, port, spy, ftp
   setup(function()
      d = H.tmpdir()
      ftp = S.vsftpd(d)
      port, user, pass = ftp.port, ftp.user, ftp.pass
      -- a curl on PATH that records every call: libcurl uploads never run it
      H.sh("mkdir -p " .. d .. "/spybin")
      spy = d .. "/curl.calls"
      local f = assert(io.open(d .. "/spybin/curl", "w"))
      f:write(('#!/bin/sh\necho "$@" >> %s\nexec /usr/bin/curl "$@"\n'):format(spy))
      f:close()
      H.sh("chmod +x " .. d .. "/spybin/curl")
      local out, rc = H.sh(("%s/pcapgen -p isp -n 20000 -s 200 -S 2 -o %s/in.pcap"):format(H.build, d))
      assert.are.equal(0, rc, out)
   end)
   teardown(function()
      if ftp then ftp.teardown() end
      H.cleanup()
   end)

   -- the whole log, argv echo included: a password appears nowhere
   local function log_body(out) return out end

   local function run(args)
      return H.sh(("cd %s && TZ=UTC %s PATH=%s/spybin:$PATH timeout 60 pcap_split %s < in.pcap")
         :format(d, H.env, d, args))
   end

   it("uploads each split as .pending, renames it, byte-identical to a local run, no curl process", function()
      local out, rc = run("-o ref/dev- --split-time 60e9 --pipe-cmd 'gzip -c -1' --filename-suffix .pcap.gz")
      assert.are.equal(0, rc, out)
      local ref = H.ls(d .. "/ref")
      assert.is_true(#ref >= 2, out)
      out, rc = run(("--curl '-u %s:%s --ftp-create-dirs' ftp://127.0.0.1:%d/up/dev- -o '' --split-time 60e9 --retry 1 --retry-delay 1e7 "
         .. "--pipe-cmd 'gzip -c -1' --filename-suffix .pcap.gz"):format(user, pass, port))
      assert.are.equal(0, rc, out)
      assert.are.same(ref, H.ls(d .. "/ftp/up"))
      for _, name in ipairs(ref) do
         assert.is_true(H.slurp(d .. "/ref/" .. name) == H.slurp(d .. "/ftp/up/" .. name), name .. " differs")
      end
      assert.matches("%(libcurl%)", out)
      assert.matches("RNFR ", out)
      assert.matches("-u %*%*%*", out)
      assert.is_nil(log_body(out):find(pass, 1, true), "the password is in the log")
      assert.is_nil(H.slurp(spy), "a curl process was started")
   end)

   it("re-sends a split the server refuses, then keeps it as .unsent.pcap and exits 1", function()
      H.sh("rm -f " .. spy)
      local out, rc = run(("--curl '-u %s:wrong%s' ftp://127.0.0.1:%d/bad/dev- -o '' --split-time 60e9 "
         .. "--retry 1 --retry-delay 1e7"):format(user, pass, port))
      assert.are.equal(1, rc, out)
      assert.matches("re%-sending", out)
      assert.matches("unsent%.pcap", out)
      assert.matches("upload failed: curl %(67%) [^\n]*530", out)
      assert.is_nil(log_body(out):find(pass, 1, true), "the password is in the log")
      assert.is_nil(H.slurp(spy), "a curl process was started")
      assert.are.same({}, H.ls(d .. "/ftp/bad"))
   end)

   it("falls back to the curl command for arguments libcurl mapping does not know, and says so once", function()
      H.sh("rm -f " .. spy)
      local out, rc = run(("--curl '-u %s:%s --ftp-create-dirs --tcp-nodelay' ftp://127.0.0.1:%d/fb/dev- -o '' "
         .. "--split-time 60e9 --retry 1 --retry-delay 1e7"):format(user, pass, port))
      assert.are.equal(0, rc, out)
      local _, notes = out:gsub("external curl: curl argument '%-%-tcp%-nodelay'", "")
      assert.are.equal(1, notes, out)
      assert.are.equal(4, #H.ls(d .. "/ftp/fb"), out)
      assert.is_nil(H.ls(d .. "/ftp/fb")[1]:find("pending", 1, true))
      assert.is_nil(log_body(out):find(pass, 1, true), "the password is in the log")
      assert.is_truthy(H.slurp(spy), "the curl command did not run")
   end)
end)
