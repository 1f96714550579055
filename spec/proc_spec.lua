-- pushcap.proc's system helpers: directory listing, locks, new files.
local H = require("spec.helper")
local ffi = require("ffi")
local C = require("pushcap.ffi")
local proc = require("pushcap.proc")

describe("pushcap.proc", function()
   after_each(H.cleanup)

   it("lists a directory in-process, names with blanks and newlines included, and grows its buffer", function()
      local d = H.tmpdir()
      local want = { "a", "with space", "new\nline", ".hidden" }
      for i = 1, 300 do want[#want + 1] = ("file-%04d-%s"):format(i, ("x"):rep(20)) end
      for _, n in ipairs(want) do assert(io.open(d .. "/" .. n, "w")):close() end
      local got = assert(proc.listdir(d))
      table.sort(got)
      table.sort(want)
      assert.are.same(want, got)
      local names, err = proc.listdir(d .. "/missing")
      assert.is_nil(names)
      assert.matches("cannot list [^\n]+/missing: No such file or directory", err)
   end)

   it("holds a lock until the fd closes, and names the holder", function()
      local d = H.tmpdir()
      local path = d .. "/x.lock"
      local fd = assert(proc.lock(path))
      -- flock locks belong to the open file: a second open is refused
      local again, err, holder = proc.lock(path)
      assert.is_nil(again)
      assert.are.equal(C.pc_getpid(), holder)
      assert.matches("x%.lock is held by pid " .. C.pc_getpid(), err)
      -- another process is refused too
      local out = H.sh(("%s/fmadiolua -e 'local fd, e = require(\"pushcap.proc\").lock(%q) print(fd, e)'"):format(H.build, path))
      assert.matches("^nil\t[^\n]+ is held by pid %d+", out)
      C.pc_close(fd)
      fd = assert(proc.lock(path))
      C.pc_close(fd)
      -- a lock that cannot be made says why
      local _, derr, dholder = proc.lock(d .. "/no/such/dir/x.lock")
      assert.is_nil(dholder)
      assert.matches("cannot lock [^\n]+: No such file or directory", derr)
   end)

   it("creates new files with exactly the mode asked for, never over an existing one", function()
      local d = H.tmpdir()
      local fd = C.pc_open_new(d .. "/secret", 384)   -- 0600
      assert.is_true(fd >= 0)
      assert.are.equal(0, C.pc_write_all(fd, "abc", 3))
      C.pc_close(fd)
      local mode, uid, gid = ffi.new("int[1]"), ffi.new("int[1]"), ffi.new("int[1]")
      assert.are.equal(0, C.pc_file_owner(d .. "/secret", mode, uid, gid))
      assert.are.equal(384, mode[0])
      assert.are.equal("abc", H.slurp(d .. "/secret"))
      assert.are.equal(-17, C.pc_open_new(d .. "/secret", 384))   -- EEXIST
   end)
end)
