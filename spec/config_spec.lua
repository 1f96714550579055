-- pushcap.config: push_pcap.lua evaluated like the appliance, every field
-- checked, each target resolved into its pcap_split argv; FilterFrame.
local H = require("spec.helper")
local config = require("pushcap.config")

-- ---- writing configs ---------------------------------------------------------

-- Lua source for a value (sorted keys, so the files are stable).
local function lua(v)
   if type(v) == "string" then return ("%q"):format(v) end
   if type(v) ~= "table" then return tostring(v) end
   local keys = {}
   for k in pairs(v) do keys[#keys + 1] = k end
   table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
   local out = {}
   for _, k in ipairs(keys) do
      local key = type(k) == "string" and ("[%q]"):format(k) or ("[%s]"):format(tostring(k))
      out[#out + 1] = key .. " = " .. lua(v[k])
   end
   return "{ " .. table.concat(out, ", ") .. " }"
end

local function write(text)
   local p = H.tmpdir() .. "/push_pcap.lua"
   local f = assert(io.open(p, "w"))
   f:write(text)
   f:close()
   return p
end

-- A config file from top-level fields and a list of targets.
local function source(top, targets)
   local lines = { "local Config = {}" }
   for k, v in pairs(top or {}) do lines[#lines + 1] = ("Config[%q] = %s"):format(k, lua(v)) end
   lines[#lines + 1] = "Config.Target = {}"
   for _, t in ipairs(targets or {}) do
      lines[#lines + 1] = "table.insert(Config.Target, " .. lua(t) .. ")"
   end
   lines[#lines + 1] = "return Config"
   return table.concat(lines, "\n") .. "\n"
end

-- Loads text; returns cfg, errors, warnings, path.
local function load_text(text)
   local p = write(text)
   local cfg, errors, warnings = config.load(p)
   return cfg, errors, warnings, p
end

local function load(top, targets) return load_text(source(top, targets)) end

-- A valid target with fields overridden.
local function target(fields)
   local t = { Desc = "t", Path = "/data/out/t-", Split = "--split-time 60e9", FileName = "--filename-tstr-HHMMSS" }
   for k, v in pairs(fields or {}) do
      if v == "nil" then t[k] = nil else t[k] = v end
   end
   return t
end

local function lines(t) return table.concat(t, "\n") end

-- ---- the shipped example -----------------------------------------------------

describe("config.load on the shipped etc/push_pcap.lua.basic", function()
   after_each(H.cleanup)

   it("loads with no errors or warnings, without touching its /mnt/remote0 paths", function()
      local existed = io.open("/mnt/remote0") ~= nil
      local day = os.date("%Y%m%d")
      local cfg, errors, warnings = config.load(H.root .. "/etc/push_pcap.lua.basic")
      assert.are.same({}, errors)
      assert.are.same({}, warnings)
      assert.are.equal(existed, io.open("/mnt/remote0") ~= nil)
      assert.are.equal(H.root .. "/etc/push_pcap.lua.basic", cfg.path)
      assert.are.equal(300e9, cfg.timeout_ring)
      assert.is_false(cfg.follow_start)
      assert.is_true(cfg.decap)
      assert.are.equal(2, #cfg.targets)
      local all, tcp = cfg.targets[1], cfg.targets[2]
      assert.are.same({ "-o", "/mnt/remote0/pcap/" .. day .. "/all-", "--split-time", "3600000000000",
                        "--filename-tstr-HHMMSS", "--pipe-cmd", "zstd -c -T2",
                        "--filename-suffix", ".pcap.zst" }, all.argv)
      assert.are.equal("all", all.desc)
      assert.are.equal("file", all.mode)
      assert.is_nil(all.bpf)
      assert.are.equal("zstd -c -T2", all.opts.pipe_cmd)
      assert.are.equal("file", all.res.sink.mode)
      assert.are.equal("net 192.168.1.0/24 and tcp", tcp.bpf)
      assert.are.same({ "-o", "/mnt/remote0/pcap/" .. day .. "/tcp_host-", "--split-time", "60e9",
                        "--filename-tstr-HHMMSS", "--filename-suffix", ".pcap" }, tcp.argv)
      assert.are.equal("time", tcp.opts.split)
      assert.are.equal(300e9, tcp.timeout_ring)
   end)
end)

-- ---- defaults, modes, overrides ------------------------------------------------

describe("config.load resolves", function()
   after_each(H.cleanup)

   it("a minimal target with every default", function()
      local cfg, errors, warnings = load(nil, { target() })
      assert.are.same({}, errors)
      assert.are.same({}, warnings)
      assert.is_false(cfg.follow_start)
      assert.is_true(cfg.decap)
      assert.are.equal(30e9, cfg.timeout_ring)
      local t = cfg.targets[1]
      assert.are.same({ index = 1, desc = "t", mode = "file", path = "/data/out/t-", decap = true,
                        output = "original", compress = "auto", chunked = false, follow_start = false,
                        stream_cat = "", ring_timeout_exit = false, timeout_ring = 30e9 },
         { index = t.index, desc = t.desc, mode = t.mode, path = t.path, decap = t.decap,
           output = t.output, compress = t.compress, chunked = t.chunked, follow_start = t.follow_start,
           stream_cat = t.stream_cat, ring_timeout_exit = t.ring_timeout_exit, timeout_ring = t.timeout_ring })
      assert.is_nil(t.cpu)
      assert.is_nil(t.bpf)
      assert.is_nil(t.filter_frame)
      assert.is_nil(t.script_new)
      assert.is_nil(t.post)
      assert.are.same({ "-o", "/data/out/t-", "--split-time", "60e9", "--filename-tstr-HHMMSS" }, t.argv)
      assert.are.equal(".pcap", t.opts.suffix)
      assert.are.equal("tstr-HHMMSS", t.opts.filename)
      assert.are.equal("file", t.res.sink.mode)
   end)

   it("empty strings as 'not set': FilterBPF, FilterFrame, PipeCmd, FileSuffix, ScriptNew, Post", function()
      local cfg, errors = load(nil, { target({ FilterBPF = "", FilterFrame = " ", PipeCmd = "", FileSuffix = "",
                                               ScriptNew = "", Post = "" }) })
      assert.are.same({}, errors)
      local t = cfg.targets[1]
      assert.is_nil(t.bpf)
      assert.is_nil(t.filter_frame)
      assert.is_nil(t.script_new)
      assert.is_nil(t.post)
      assert.are.same({ "-o", "/data/out/t-", "--split-time", "60e9", "--filename-tstr-HHMMSS" }, t.argv)
   end)

   local modes = {
      { "File", "file" }, { "FILE", "file" }, { "file", "file" }, { "fIlE", "file" },
      { "NULL", "null" }, { "null", "null" }, { "RCLONE", "rclone" }, { "rclone", "rclone" },
      { "RClone", "rclone" }, { "CURL", "curl" }, { "curl", "curl" }, { "LXC", "lxc" }, { "lxc", "lxc" },
   }
   for _, m in ipairs(modes) do
      it("Mode " .. m[1] .. " as " .. m[2], function()
         local path = ({ curl = "ftp://host/dir/p-", rclone = "s3:bucket/p-", lxc = "/opt/fmadio/queue/lxc_ring0" })[m[2]]
            or "/data/p-"
         local cfg, errors = load(nil, { target({ Mode = m[1], Path = path }) })
         assert.are.same({}, errors)
         local t = cfg.targets[1]
         assert.are.equal(m[2], t.mode)
         if m[2] == "lxc" then
            assert.is_nil(t.argv)
            assert.is_nil(t.res)
         else
            assert.are.equal(m[2], t.opts.mode)
            assert.are.equal(m[2], t.res.sink.mode)
         end
      end)
   end

   it("per-target Decap, FollowStart and TimeoutRing over the top-level ones", function()
      local cfg, errors = load({ Decap = false, FollowStart = true, TimeoutRing = 5 * 60e9 }, {
         target({ Desc = "inherits" }),
         target({ Desc = "overrides", Path = "/data/o-", Decap = true, FollowStart = false, TimeoutRing = 10e9 }),
      })
      assert.are.same({}, errors)
      assert.is_false(cfg.decap)
      assert.is_true(cfg.follow_start)
      assert.are.equal(300e9, cfg.timeout_ring)
      local a, b = cfg.targets[1], cfg.targets[2]
      assert.are.same({ false, true, 300e9 }, { a.decap, a.follow_start, a.timeout_ring })
      assert.are.same({ true, false, 10e9 }, { b.decap, b.follow_start, b.timeout_ring })
   end)

   it("the pushcap fields Output, Compress, CurlArgs and the FMADIO extras CPU, Chunked, StreamCat, hooks", function()
      local cfg, errors = load(nil, {
         target({ Output = "Decap", Compress = "EXTERNAL", CPU = 30, Chunked = true,
                  StreamCat = "--ring-timeout-exit ", ScriptNew = "/bin/true new", Post = "/usr/bin/md5sum" }),
      })
      assert.are.same({}, errors)
      local t = cfg.targets[1]
      assert.are.equal("decap", t.output)
      assert.are.equal("external", t.compress)
      assert.are.equal(30, t.cpu)
      assert.is_true(t.chunked)
      assert.are.equal("--ring-timeout-exit ", t.stream_cat)
      assert.is_true(t.ring_timeout_exit)
      assert.are.equal("/bin/true new", t.script_new)
      assert.are.equal("/bin/true new", t.opts.script_new)
      assert.are.equal("/usr/bin/md5sum", t.post)
   end)
end)

-- ---- argv ---------------------------------------------------------------------

describe("config.load builds pcap_split's argv in the appliance's order", function()
   after_each(H.cleanup)

   local cases = {
      { "rclone with gzip (the order of the appliance's logged argv)",
        { Mode = "rclone", Path = "ssh://mnt/store0/tmp2/rclone/everything_", FileName = "--filename-tstr-HHMMSS",
          PipeCmd = "gzip -c -1", FileSuffix = ".pcap.gz" },
        { "-o", "ssh://mnt/store0/tmp2/rclone/everything_", "--split-time", "60e9", "--filename-tstr-HHMMSS",
          "--pipe-cmd", "gzip -c -1", "--rclone", "--filename-suffix", ".pcap.gz" } },
      { "SplitCmd words last, after the suffix",
        { Split = "--split-byte 1e9 --split-time-roundup 0", FileName = "--filename-epoch-sec-startend",
          PipeCmd = "zstd -c -T8", FileSuffix = ".pcap.zstd", SplitCmd = "-Z root --packet-chomp 4" },
        { "-o", "/data/out/t-", "--split-byte", "1e9", "--split-time-roundup", "0", "--filename-epoch-sec-startend",
          "--pipe-cmd", "zstd -c -T8", "--filename-suffix", ".pcap.zstd", "-Z", "root", "--packet-chomp", "4" } },
      { "NULL mode flag, Path optional",
        { Mode = "NULL", Path = "nil", Split = "--split-byte 1e9", FileName = "--filename-epoch-sec" },
        { "-o", "", "--split-byte", "1e9", "--filename-epoch-sec", "--null" } },
      { "CURL: -o empty, --curl <CurlArgs> <Path>, ScriptNew (the MAGPACK example)",
        { Mode = "CURL", Path = "ftp://192.168.1.100/device-prefix", Split = "--split-byte 1e9",
          FileName = "--filename-tstr-HHMMSS_SUB", Chunked = true, FollowStart = true,
          ScriptNew = "/opt/fmadio/analytics/push_realtime_checkremote.lua 10" },
        { "-o", "", "--split-byte", "1e9", "--filename-tstr-HHMMSS_SUB", "--curl", "",
          "ftp://192.168.1.100/device-prefix", "--script-new", "/opt/fmadio/analytics/push_realtime_checkremote.lua 10" } },
      { "CURL with CurlArgs",
        { Mode = "curl", Path = "ftp://10.0.0.1/pcap/x-", CurlArgs = "--user a:b --ftp-create-dirs" },
        { "-o", "", "--split-time", "60e9", "--filename-tstr-HHMMSS", "--curl", "--user a:b --ftp-create-dirs",
          "ftp://10.0.0.1/pcap/x-" } },
      { "quoted words in FileName stay one word",
        { FileName = "--filename-strftime '%Y/%m/%d/%H%M'" },
        { "-o", "/data/out/t-", "--split-time", "60e9", "--filename-strftime", "%Y/%m/%d/%H%M" } },
      { "a missing FileName takes pcap_split's default, spelled out",
        { FileName = "nil", Split = "--split-time " .. (60 * 60 * 1e9) },
        { "-o", "/data/out/t-", "--split-time", "3600000000000", "--filename-tstr-HHMMSS" } },
   }
   for _, c in ipairs(cases) do
      it(c[1], function()
         local cfg, errors = load(nil, { target(c[2]) })
         assert.are.same({}, errors)
         assert.are.same(c[3], cfg.targets[1].argv)
         assert.is_truthy(cfg.targets[1].res)
      end)
   end

   it("resolves what the argv implies: curl URL split, owner, byte split", function()
      local cfg, errors = load(nil, {
         target({ Desc = "ftp", Mode = "CURL", Path = "ftp://192.168.1.100/device-prefix", Split = "--split-byte 1e9" }),
         target({ Desc = "own", Path = "/data/own-", SplitCmd = "-Z root" }),
      })
      assert.are.same({}, errors)
      local ftp, own = cfg.targets[1], cfg.targets[2]
      assert.are.equal("ftp://192.168.1.100/", ftp.res.sink.url_dir)
      assert.are.equal("device-prefix", ftp.res.sink.name_prefix)
      assert.are.equal("byte", ftp.opts.split)
      assert.are.same({ uid = 0, gid = 0 }, own.res.owner)
   end)

   it("a loop-generated config: 48 targets pinned one per CPU (the OPRA example)", function()
      local cfg, errors, warnings = load_text([[
local Config = {}
Config.Target = {}
for i = 0, 47 do
   table.insert(Config.Target, {
      Desc      = ("opra-%02d"):format(i),
      Mode      = "File",
      Path      = ("/mnt/remote0/opra/%02d/opra-"):format(i),
      Split     = "--split-time " .. (60 * 1e9),
      FileName  = "--filename-tstr-HHMMSS",
      FilterBPF = ("udp and dst host 233.43.202.%d"):format(i + 1),
      PipeCmd   = "lz4 -c",
      FileSuffix = ".pcap.lz4",
      CPU       = 49 + i,
   })
end
return Config
]])
      assert.are.same({}, errors)
      assert.are.same({}, warnings)
      assert.are.equal(48, #cfg.targets)
      for i, t in ipairs(cfg.targets) do
         assert.are.equal(i, t.index)
         assert.are.equal(("opra-%02d"):format(i - 1), t.desc)
         assert.are.equal(48 + i, t.cpu)
         assert.are.equal(("udp and dst host 233.43.202.%d"):format(i), t.bpf)
         assert.are.same({ "-o", ("/mnt/remote0/opra/%02d/opra-"):format(i - 1), "--split-time", "60000000000",
                           "--filename-tstr-HHMMSS", "--pipe-cmd", "lz4 -c", "--filename-suffix", ".pcap.lz4" }, t.argv)
      end
   end)

   it("evaluates in a fresh environment over _G: os.date, string, math work; globals do not leak", function()
      local cfg, errors = load_text([[
PushcapLeak = true
local Config = { Target = {} }
Config.TimeoutRing = math.floor(2.5 * 60) * 1e9
table.insert(Config.Target, { Desc = string.upper("x"), Path = os.date("/d/%Y/x-"),
   Split = "--split-time 60e9", FileName = "--filename-tstr-HHMM" })
return Config
]])
      assert.are.same({}, errors)
      assert.are.equal(150e9, cfg.timeout_ring)
      assert.are.equal("X", cfg.targets[1].desc)
      assert.are.equal(os.date("/d/%Y/x-"), cfg.targets[1].path)
      assert.is_nil(rawget(_G, "PushcapLeak"))
   end)
end)

-- ---- bad configs ------------------------------------------------------------------

describe("config.load refuses a bad config with one message per problem", function()
   after_each(H.cleanup)

   -- { what, config source, pattern the single error must match (after "<path>: ") }
   local function one(t) return source(nil, { target(t) }) end
   local cases = {
      { "syntax error", "local Config = {\n Target = {}\n x = 1 }\nreturn Config\n", "^:3: '}' expected", "nocfg" },
      { "runtime error", "local Config = {}\n\nundefined_function()\nreturn Config\n",
        "^:3: attempt to call global 'undefined_function'", "nocfg" },
      { "error inside a library call gets the config's line", "local C = {}\n\nlocal x = string.rep()\nreturn C\n",
        "^:3: bad argument #1 to 'rep'", "nocfg" },
      { "no table returned", "local Config = {}\n", "^: must return a table %(end the file with `return Config`%), it returned nil", "nocfg" },
      { "no Target", "return {}\n", "^: Target: missing" },
      { "Target not a list", "return { Target = \"all\" }\n", "^: Target: must be a list of targets, got string \"all\"" },
      { "empty Target: nothing to push", source(nil, {}), "^: Target: empty, nothing to push" },
      { "a target that is not a table", "return { Target = { \"all\" } }\n", "^: target 1: must be a table of fields, got string \"all\"" },
      { "missing Desc", one({ Desc = "nil" }), "^: target 1: Desc: missing" },
      { "missing Path", one({ Path = "nil" }), '^: target 1 "t": Path: missing' },
      { "empty Path", one({ Path = "" }), '^: target 1 "t": Path: missing' },
      { "missing LXC Path", one({ Mode = "LXC", Path = "nil" }), '^: target 1 "t": Path: missing %(the lxc_ring file%)' },
      { "missing Split", one({ Split = "nil" }), '^: target 1 "t": Split: missing' },
      { "unknown Mode", one({ Mode = "ftp" }), '^: target 1 "t": Mode: unknown mode "ftp" %(use File, NULL, RCLONE, CURL, SSH or LXC' },
      { "SSH Path without a host", one({ Mode = "SSH", Path = "/data/pcap/all-" }),
        '^: target 1 "t": Path: "/data/pcap/all%-" is not %[user@%]host:/dir/prefix %(SSH mode%)' },
      { "BPF libpcap cannot compile", one({ FilterBPF = "net 192.168.1.0/24 and tpc" }),
        "^: target 1 \"t\": FilterBPF: \"net 192.168.1.0/24 and tpc\" does not compile: unknown network 'tpc'" },
      { "BPF syntax error", one({ FilterBPF = "port 80 and and" }),
        '^: target 1 "t": FilterBPF: "port 80 and and" does not compile: .*syntax error' },
      { "Desc with a space (the docs' \"port80 zstd\")", one({ Desc = "port80 zstd" }),
        '^: target 1 "port80 zstd": Desc: "port80 zstd" is not safe as a file name' },
      { "Desc with a /", one({ Desc = "a/b" }), 'Desc: "a/b" is not safe as a file name' },
      { "Desc with ..", one({ Desc = "../etc" }), 'Desc: "../etc" is not safe as a file name' },
      { "Desc with a leading .", one({ Desc = ".hidden" }), 'Desc: ".hidden" is not safe as a file name' },
      { "Desc with a shell character", one({ Desc = "a;b" }), 'Desc: "a;b" is not safe as a file name' },
      { "Desc too long", one({ Desc = ("d"):rep(201) }), "Desc: is 201 characters long; at most 200" },
      { "Desc not a string", one({ Desc = 5 }), "^: target 1: Desc: must be a string, got number 5" },
      { "Split pcap_split does not know", one({ Split = "--split-tme 60e9" }),
        '^: target 1 "t": Split: "%-%-split%-tme 60e9": unknown command %[%-%-split%-tme%]' },
      { "--split-size (a docs example) points to --split-byte", one({ Split = "--split-size 1e9" }),
        'Split: "%-%-split%-size 1e9": unknown command %[%-%-split%-size%] %(pcap_split splits by size with %-%-split%-byte%)' },
      { "Split without a split type", one({ Split = "--split-time-roundup 0" }),
        'Split: "%-%-split%-time%-roundup 0": invalid config%. no split type' },
      { "Split of 0", one({ Split = "--split-time 0" }), "Split: \"%-%-split%-time 0\": the split size/time must be greater than 0" },
      { "Split with a bad number", one({ Split = "--split-time 1m" }), "Split: \"%-%-split%-time 1m\": %-%-split%-time: '1m' is not a non%-negative number" },
      { "Split missing its value", one({ Split = "--split-time" }), "Split: \"%-%-split%-time\": %-%-split%-time needs a value" },
      { "Split with an unbalanced quote", one({ Split = "--split-time '60e9" }), "Split: \"%-%-split%-time '60e9\": unbalanced ' quote" },
      { "Split as a number", one({ Split = 60e9 }), '^: target 1 "t": Split: must be a string, got number 60000000000$' },
      { "FileName pcap_split does not know", one({ FileName = "--filename-tstr-HHMMSS_XX" }),
        "FileName: \"%-%-filename%-tstr%-HHMMSS_XX\": unknown command %[%-%-filename%-tstr%-HHMMSS_XX%]" },
      { "FileName strftime without a format", one({ FileName = "--filename-strftime ''" }),
        "FileName: \"%-%-filename%-strftime ''\": %-%-filename%-strftime needs a format string" },
      { "SplitCmd with an unknown user", one({ SplitCmd = "-Z no_such_user_pushcap" }),
        "SplitCmd: \"%-Z no_such_user_pushcap\": %-Z: .*no_such_user_pushcap" },
      { "SplitCmd with a bad CPU list", one({ SplitCmd = "--cpu 1,x" }), "SplitCmd: \"%-%-cpu 1,x\": %-%-cpu: 'x' is not a CPU number" },
      { "SplitCmd choosing the output mode", one({ SplitCmd = "--rclone" }),
        'SplitCmd: "%-%-rclone": %-%-rclone selects the output mode; set Mode instead' },
      { "SplitCmd setting -o", one({ SplitCmd = "-o /tmp/x" }), 'SplitCmd: "%-o /tmp/x": %-o is set from Path' },
      { "CURL Path without a /", one({ Mode = "CURL", Path = "nourl" }), "Path: %-%-curl needs a URL with a '/'" },
      { "CPU negative", one({ CPU = -1 }), "CPU: must be a non%-negative integer %(a CPU number%), got number %-1" },
      { "CPU fractional", one({ CPU = 1.5 }), "CPU: must be a non%-negative integer" },
      { "CPU as a string", one({ CPU = "3" }), 'CPU: must be a non%-negative integer %(a CPU number%), got string "3"' },
      { "Decap not a boolean", one({ Decap = "yes" }), 'Decap: must be true or false, got string "yes"' },
      { "FollowStart not a boolean", one({ FollowStart = 1 }), "FollowStart: must be true or false, got number 1" },
      { "Chunked not a boolean", one({ Chunked = "true" }), 'Chunked: must be true or false, got string "true"' },
      { "top-level Decap not a boolean", source({ Decap = "no" }, { target() }), '^: Decap: must be true or false, got string "no"' },
      { "top-level TimeoutRing of 0", source({ TimeoutRing = 0 }, { target() }), "^: TimeoutRing: must be a positive number of ns" },
      { "top-level TimeoutRing as a string", source({ TimeoutRing = "300" }, { target() }),
        '^: TimeoutRing: must be a positive number of ns %(e%.g%. 5%*60e9%), got string "300"' },
      { "per-target TimeoutRing negative", one({ TimeoutRing = -5 }), 'target 1 "t": TimeoutRing: must be a positive number' },
      { "PipeCmd not a string", one({ PipeCmd = true }), "PipeCmd: must be a string, got boolean true" },
      { "bad FilterFrame", one({ FilterFrame = "port 300" }),
        'FilterFrame: "port 300": port 300 at column 6 is out of range %(0%-255%)' },
      { "unknown Output", one({ Output = "inner" }), 'Output: unknown value "inner" %(use original or decap%)' },
      { "unknown Compress", one({ Compress = "never" }), 'Compress: unknown value "never" %(use auto or external%)' },
      { "duplicate Desc", source(nil, { target({ Desc = "a" }), target({ Desc = "b", Path = "/x/b-" }),
                                        target({ Desc = "a", Path = "/x/c-" }) }),
        '^: target 3 "a": Desc: "a" is already used by target 1' },
   }
   for _, c in ipairs(cases) do
      it(c[1], function()
         local cfg, errors, _, path = load_text(c[2])
         assert.are.equal(1, #errors, lines(errors))
         assert.are.equal(path, errors[1]:sub(1, #path))
         local rest = errors[1]:sub(#path + 1)
         assert.is_truthy(rest:match(c[3]), errors[1])
         -- a cfg comes back whenever the file evaluated to a table
         assert.are.equal(c[4] ~= "nocfg", cfg ~= nil)
      end)
   end

   it("a missing file says to copy the template", function()
      local d = H.tmpdir()
      local cfg, errors = config.load(d .. "/push_pcap.lua")
      assert.is_nil(cfg)
      assert.are.equal(1, #errors)
      assert.is_truthy(errors[1]:match("^cannot open " .. d:gsub("%p", "%%%0") .. "/push_pcap%.lua"), errors[1])
      assert.is_truthy(errors[1]:match("etc_ro/push_pcap%.lua%.basic"), errors[1])
   end)

   it("reports every problem: three problems, three errors, in config order", function()
      local cfg, errors, _, path = load(nil, {
         target({ Desc = "a", Mode = "ftp", FilterBPF = "tcp and nosuchkeyword" }),
         target({ Desc = "b", Path = "nil" }),
      })
      assert.is_truthy(cfg)
      assert.are.equal(3, #errors, lines(errors))
      assert.is_truthy(errors[1]:match('^' .. path:gsub("%p", "%%%0") .. ': target 1 "a": Mode: unknown mode "ftp"'), errors[1])
      assert.is_truthy(errors[2]:match(': target 1 "a": FilterBPF: "tcp and nosuchkeyword" does not compile: '), errors[2])
      assert.is_truthy(errors[3]:match(': target 2 "b": Path: missing'), errors[3])
   end)

   it("reports problems in several pcap_split fields of one target", function()
      local _, errors = load(nil, { target({ Mode = "CURL", Path = "nourl", FileName = "--filename-strftime",
                                             SplitCmd = "-Z no_such_user_pushcap" }) })
      assert.are.equal(3, #errors, lines(errors))
      assert.is_truthy(lines(errors):match('FileName: "%-%-filename%-strftime": %-%-filename%-strftime needs a value'))
      assert.is_truthy(lines(errors):match('SplitCmd: "%-Z no_such_user_pushcap": %-Z:'))
      assert.is_truthy(lines(errors):match("Path: %-%-curl needs a URL"))
   end)
end)

-- ---- warnings ------------------------------------------------------------------------

describe("config.load warns", function()
   after_each(H.cleanup)

   it("about unknown fields, suggesting the field they were meant to be, without failing", function()
      local cfg, errors, warnings, path = load({ TimeOutRing = 60e9, FilterBPF = "tcp", Colour = "red" },
         { target({ FilterBpf = "tcp", Fliename = "x", Whatever = 1, Target = {} }) })
      assert.are.same({}, errors)
      assert.is_truthy(cfg)
      assert.is_nil(cfg.targets[1].bpf)
      local p = path .. ": "
      assert.are.same({
         p .. "unknown field Colour ignored",
         p .. "field FilterBPF ignored at the top level: it is a per-target field",
         p .. "unknown field TimeOutRing ignored (did you mean TimeoutRing?)",
         p .. 'target 1 "t": unknown field FilterBpf ignored (did you mean FilterBPF?)',
         p .. 'target 1 "t": unknown field Fliename ignored (did you mean FileName?)',
         p .. 'target 1 "t": field Target ignored: it is a top-level field',
         p .. 'target 1 "t": unknown field Whatever ignored',
      }, warnings)
   end)

   local cases = {
      { "a missing FileName", { FileName = "nil" },
        'target 1 "t": FileName: missing: using %-%-filename%-tstr%-HHMMSS %(pcap_split\'s default%)' },
      { "a FileSuffix without a dot (a docs example)", { FileSuffix = "pcap.gz" },
        'FileSuffix: "pcap.gz" does not start with \'.\'' },
      { "pcap_split fields in LXC mode", { Mode = "LXC", Path = "/opt/fmadio/queue/lxc_ring0", FileName = "nil" },
        "Split: ignored in LXC mode" },
      { "CurlArgs outside CURL mode", { CurlArgs = "--user a:b" }, "CurlArgs: ignored: only CURL mode uses it" },
      { "Output decap with Decap off", { Output = "decap", Decap = false }, 'Output: "decap" has no effect with Decap = false' },
   }
   for _, c in ipairs(cases) do
      it("about " .. c[1], function()
         local _, errors, warnings = load(nil, { target(c[2]) })
         assert.are.same({}, errors)
         assert.are.equal(1, #warnings, lines(warnings))
         assert.is_truthy(warnings[1]:match(c[3]), warnings[1])
      end)
   end

   it("about two targets writing the same files", function()
      local _, errors, warnings = load(nil, { target({ Desc = "a" }), target({ Desc = "b", FilterBPF = "tcp" }) })
      assert.are.same({}, errors)
      assert.are.equal(1, #warnings, lines(warnings))
      assert.is_truthy(warnings[1]:match('target 2 "b": Path: "/data/out/t%-" is also target 1\'s: both write the same file names'))
   end)
end)

-- ---- FilterFrame -------------------------------------------------------------------------

describe("config.frame_filter", function()
   after_each(H.cleanup)
   local FCS = 1
   -- { expression, port, flags, expected }
   local cases = {
      { "", 0, 0, true }, { "", 255, FCS, true },
      { "port 3", 3, 0, true }, { "port 3", 3, FCS, true }, { "port 3", 4, 0, false }, { "port 3", 2, 0, false },
      { "port 1-3", 0, 0, false }, { "port 1-3", 1, 0, true }, { "port 1-3", 3, 0, true }, { "port 1-3", 4, 0, false },
      { "port 1 - 3", 2, 0, true },
      { "port 0,5,10-12", 0, 0, true }, { "port 0,5,10-12", 5, 0, true }, { "port 0,5,10-12", 11, 0, true },
      { "port 0,5,10-12", 6, 0, false }, { "port 0,5,10-12", 13, 0, false },
      { "port 0-255", 255, 0, true }, { "port 255", 255, FCS, true }, { "port 255", 254, 0, false },
      { "fcs-error", 0, FCS, true }, { "fcs-error", 0, 0, false },
      { "fcs-error", 7, 0x81, true }, { "fcs-error", 7, 0x80, false },   -- other flag bits are ignored
      { "fcs-ok", 7, 0, true }, { "fcs-ok", 7, FCS, false }, { "fcs-ok", 7, 0x80, true },
      { "port 1 and fcs-ok", 1, 0, true }, { "port 1 and fcs-ok", 1, FCS, false }, { "port 1 and fcs-ok", 2, 0, false },
      { "port 1 or port 2", 2, 0, true }, { "port 1 or port 2", 3, 0, false },
      { "port 1 or port 2 or port 9", 9, 0, true },
      { "not port 1", 1, 0, false }, { "not port 1", 0, 0, true },
      { "! port 1", 1, 0, false }, { "!port 1", 2, 0, true },
      { "not not port 1", 1, 0, true },
      { "port 1 && fcs-error", 1, FCS, true }, { "port 1 && fcs-error", 1, 0, false },
      { "port 1 || fcs-error", 5, FCS, true }, { "port 1 || fcs-error", 5, 0, false },
      { "(port 1 or port 2) and not fcs-error", 2, 0, true }, { "(port 1 or port 2) and not fcs-error", 2, FCS, false },
      { "(port 1 or port 2) and not fcs-error", 3, 0, false },
      { "port 1 or (port 2 and fcs-error)", 1, 0, true }, { "port 1 or (port 2 and fcs-error)", 2, 0, false },
      { "port 1 or (port 2 and fcs-error)", 2, FCS, true },
      { "not (port 1 or fcs-error)", 0, 0, true }, { "not (port 1 or fcs-error)", 1, 0, false },
      { "not (port 1 or fcs-error)", 0, FCS, false },
      { "((port 4))", 4, 0, true },
      { "PORT 1 AND FCS-OK", 1, 0, true }, { "PORT 1 AND FCS-OK", 1, FCS, false },
   }
   for _, c in ipairs(cases) do
      it(("'%s' at port %d flags 0x%02x is %s"):format(c[1], c[2], c[3], tostring(c[4])), function()
         local pred, tbl = config.frame_filter(c[1])
         assert.is_function(pred, tbl)
         assert.are.equal(c[4], pred(c[2], c[3]))
         assert.are.equal(c[4], tbl[c[2] * 2 + bit.band(c[3], 1)])
      end)
   end

   it("returns a full 512-entry table that agrees with the predicate", function()
      for _, expr in ipairs({ "", "port 3", "port 0,5,10-12 and fcs-ok", "not (port 1 or fcs-error)" }) do
         local pred, tbl = config.frame_filter(expr)
         local n = 0
         for port = 0, 255 do
            for _, flags in ipairs({ 0, 1 }) do
               local v = tbl[port * 2 + flags]
               assert.are.equal("boolean", type(v))
               assert.are.equal(v, pred(port, flags))
               n = n + 1
            end
         end
         assert.are.equal(512, n)
      end
   end)

   local bad = {
      { "port", "expected a port number %(0%-255%) at the end" },
      { "port 256", "port 256 at column 6 is out of range %(0%-255%)" },
      { "port 3-1", "port range 3%-1 at column 1 is backwards" },
      { "port 1-", "expected a port number %(0%-255%) at the end" },
      { "port -1", "expected a port number %(0%-255%) at column 6, found '%-'" },
      { "port x", "expected a port number %(0%-255%) at column 6, found 'x'" },
      { "port 1 and", "expected a term %(port N, port N%-M, fcs%-error, fcs%-ok, not, '%('%) at the end" },
      { "port 1 or port 2 and fcs-ok", "'and' at column 18 follows 'or' in the same group: add parentheses" },
      { "port 1 and port 2 || fcs-ok", "'||' at column 19 follows 'and' in the same group" },
      { "(port 1", "expected '%)' at the end" },
      { "port 1)", "expected 'and', 'or' or the end at column 7, found '%)'" },
      { "port 1 port 2", "expected 'and', 'or' or the end at column 8, found 'port'" },
      { "vlan 1", "expected a term .* at column 1, found 'vlan'" },
      { "fcs", "expected a term .* at column 1, found 'fcs'" },
      { "port 1 $", "unexpected character '%$' at column 8" },
      { "()", "expected a term .* at column 2, found '%)'" },
   }
   for _, c in ipairs(bad) do
      it("refuses '" .. c[1] .. "'", function()
         local pred, msg = config.frame_filter(c[1])
         assert.is_nil(pred)
         assert.is_truthy(msg:match(c[2]), msg)
      end)
   end

   it("refuses a non-string", function()
      local pred, msg = config.frame_filter(5)
      assert.is_nil(pred)
      assert.is_truthy(msg:match("must be a string"), msg)
   end)

   it("is set on a target by load as { expr, pred, tbl }", function()
      local cfg, errors = load(nil, { target({ FilterFrame = "port 2-3 and fcs-ok" }) })
      assert.are.same({}, errors)
      local ff = cfg.targets[1].filter_frame
      assert.are.equal("port 2-3 and fcs-ok", ff.expr)
      assert.is_true(ff.pred(3, 0))
      assert.is_false(ff.pred(3, 1))
      assert.is_true(ff.tbl[2 * 2])
      assert.is_false(ff.tbl[4 * 2])
   end)
end)

-- ---- describe ----------------------------------------------------------------------------

describe("config.describe", function()
   after_each(H.cleanup)

   it("prints the top-level settings and per target what will run", function()
      local cfg, errors = load({ TimeoutRing = 5 * 60e9, Decap = true }, {
         target({ Desc = "gz", Mode = "RCLONE", Path = "s3:b/all-", PipeCmd = "gzip -c -1", FileSuffix = ".pcap.gz",
                  FilterBPF = "tcp", FilterFrame = "port 1", CPU = 30, Output = "decap", Post = "/bin/post",
                  StreamCat = "--ring-timeout-exit " }),
         target({ Desc = "ring", Mode = "lxc", Path = "/opt/fmadio/queue/lxc_ring0", FileName = "nil", Split = "nil" }),
      })
      assert.are.same({}, errors)
      local text = lines(config.describe(cfg))
      local expect = {
         "^config " .. cfg.path:gsub("%p", "%%%0") .. "\n",
         "\n  FollowStart false, Decap true, TimeoutRing 300 s, 2 targets\n",
         '\ntarget 1 "gz"\n',
         "\n  mode        rclone\n",
         "\n  path        s3:b/all%-\n",
         "\n  pcap_split  %-o s3:b/all%- %-%-split%-time 60e9 %-%-filename%-tstr%-HHMMSS %-%-pipe%-cmd 'gzip %-c %-1' %-%-rclone %-%-filename%-suffix %.pcap%.gz\n",
         "\n  split       by time, every 60 s; names tstr%-HHMMSS, e%.g%. s3:b/all%-%d+_%d+00%.pcap%.gz\n",
         '\n  filter      BPF "tcp"; FilterFrame "port 1"\n',
         "\n  decap       on; writes the decapsulated frame\n",
         '\n  compress    PipeCmd "gzip %-c %-1" %(Compress auto: in%-process when recognised%)\n',
         "\n  cpu         30\n",
         "\n  on failure  the split is queued and re%-sent until delivered\n",
         '\n  hooks       ScriptNew none; Post "/bin/post"\n',
         '\ntarget 2 "ring"\n',
         "\n  mode        lxc\n",
         "\n  pcap_split  %- %(stream_cat writes the ring%)\n",
         "\n  stall       TimeoutRing 300 s, then keep waiting\n",
      }
      for _, pat in ipairs(expect) do
         assert.is_truthy(text:match(pat), "missing " .. pat .. " in\n" .. text)
      end
   end)
end)
