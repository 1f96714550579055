-- analytics_scheduler: windows a few seconds long, engines that crash or
-- ignore SIGTERM, reloads, TimeOffset, and push_pcap plus push_pcap_eod
-- run side by side while the capture writer fills the active capture.
local H = require("spec.helper")
local C = require("pushcap.ffi")
local schedule = require("pushcap.schedule")

local function wait_for(what, secs, f)
   local deadline = C.pc_mono_ns() + secs * 1e9
   while C.pc_mono_ns() < deadline do
      local v = f()
      if v then return v end
      C.pc_nap_ns(100e6)
   end
   error(("timed out after %g s waiting for %s"):format(secs, what), 2)
end

-- A scratch root with an engine directory; returns d and a shell runner.
local function new_root()
   local d = H.tmpdir()
   H.sh(("mkdir -p %s/opt/fmadio/etc/analytics %s/mnt/store0/log"):format(d, d))
   local env = ("export PUSHCAP_ROOT=%s PATH=%s:%s:$PATH TZ=UTC &&"):format(d, H.build, H.bin)
   return d, function(cmd) return H.sh(("cd %s && %s %s"):format(d, env, cmd)) end
end

local function write(path, text)
   local f = assert(io.open(path, "w"))
   f:write(text)
   f:close()
end

-- An engine that records its starts and stops in <root>/<name>.events as
-- "start <epoch s>" / "term <epoch s>"; trap_term = false ignores SIGTERM.
local function fake_engine(d, name, opts)
   opts = opts or {}
   local trap = opts.ignore_term and "trap '' TERM" or ("trap 'echo term $(date +%%s.%%N) >> %s/%s.events; exit 0' TERM"):format(d, name)
   write(("%s/opt/fmadio/etc/analytics/%s"):format(d, name), ([[#!/bin/sh
echo start $(date +%%s.%%N) >> %s/%s.events
echo "engine %s running"
%s
%s
]]):format(d, name, name, trap, opts.exit and ("exit " .. opts.exit) or "while :; do sleep 0.1; done"))
   H.sh(("chmod +x %s/opt/fmadio/etc/analytics/%s"):format(d, name))
end

local function events(d, name)
   local out = {}
   for line in (H.slurp(("%s/%s.events"):format(d, name)) or ""):gmatch("[^\n]+") do
      local what, t = line:match("^(%a+) ([%d.]+)")
      out[#out + 1] = { what = what, t = tonumber(t) }
   end
   return out
end

-- HH:MM:SS of now + s (the specs run with TZ=UTC, as the scheduler does here)
local function at(s) return os.date("!%H:%M:%S", os.time() + s) end

local function write_schedule(d, rows)
   local parts = {}
   for _, r in ipairs(rows) do parts[#parts + 1] = r end
   write(d .. "/opt/fmadio/etc/analytics_schedule.lua",
      "return { Schedule = {\n" .. table.concat(parts, ",\n") .. "\n} }\n")
end

-- Starts the scheduler in the background for at most secs seconds.
local function start_scheduler(d, sh, secs, extra)
   sh(("( TZ=UTC timeout %d analytics_scheduler %s > sched.log 2>&1 & echo $! > sched.pid ) >/dev/null 2>&1")
      :format(secs, extra or "--grace 2"))
   return function(sig)
      sh("kill -" .. (sig or "TERM") .. " $(cat sched.pid) 2>/dev/null")
   end
end

local function stop_scheduler(d, sh)
   sh("kill -TERM $(cat sched.pid) 2>/dev/null; for i in $(seq 100); do kill -0 $(cat sched.pid) 2>/dev/null || break; sleep 0.1; done")
   return H.slurp(d .. "/sched.log") or ""
end

describe("schedule rows", function()
   local function engines(names)
      return { find_engine = function(n) return names[n] and ("/x/" .. n) or nil end }
   end

   it("names the row and field of every problem, and keeps the good rows", function()
      local good, errors = schedule.check({
         { Engine = "push_pcap", Always = true },
         { Engine = "nosuch", Always = true },
         { Engine = "push_pcap_eod", Start = "24:00", Stop = "01:00" },
         { Engine = "push_pcap_eod", Start = "18:00", Stop = "23:00", Mon = true, Fri = true },
         { Engine = "push_pcap_eod", Start = "22:00", Stop = "22:30", Fri = true },
         { Engine = "push_pcap", Start = "08:00", Stop = "08:00" },
         { Engine = "push_pcap_eod", Start = "1:00", Stop = "2:00", Mon = "yes" },
         { Engine = "push_pcap_eod", Start = "1:00", Stop = "2:00", Sat = false, Sun = false },
         { Engine = "push_pcap_eod", Always = true, Start = "01:00" },
         { Engine = "push_pcap_eod", Strat = "01:00", Stop = "02:00" },
      }, engines({ push_pcap = true, push_pcap_eod = true }))
      assert.are.same({ 1, 4 }, { good[1].row, good[2].row })
      assert.are.equal(2, #good)
      local text = table.concat(errors, "\n")
      assert.matches('row 2 %(nosuch%): Engine: no engine "nosuch"', text)
      assert.matches('row 3 %(push_pcap_eod%): Start: "24:00" is not a time of day', text)
      assert.matches("row 5 %(push_pcap_eod%): Start: overlaps row 4", text)
      assert.matches("row 6 %(push_pcap%): Stop: equals Start", text)
      assert.matches('row 7 %(push_pcap_eod%): Mon: "yes" is not true or false', text)
      assert.matches("row 8 %(push_pcap_eod%): Mon..Sun: no day is true", text)
      assert.matches("row 9 %(push_pcap_eod%): Start: a 24/7 row", text)
      assert.matches("row 10 %(push_pcap_eod%): Strat: unknown field", text)
      assert.matches("row 10 %(push_pcap_eod%): Start: missing", text)
   end)

   it("opens windows on their days, over midnight on the start day's flag", function()
      local good = schedule.check({
         { Engine = "a", Start = "09:00", Stop = "17:00", Mon = true },
         { Engine = "b", Start = "22:00", Stop = "02:00", Fri = true },
      }, engines({ a = true, b = true }))
      local function t(day, hms)  -- 2023-11-13 was a Monday
         local h, m = hms:match("(%d+):(%d+)")
         return os.time({ year = 2023, month = 11, day = 13 + day, hour = tonumber(h), min = tonumber(m), sec = 0 })
      end
      local a, b = good[1], good[2]
      assert.is_true(schedule.active(a, t(0, "09:00")))
      assert.is_false(schedule.active(a, t(0, "17:00")))
      assert.is_false(schedule.active(a, t(1, "10:00")))        -- Tuesday
      assert.is_true(schedule.active(b, t(4, "23:00")))         -- Friday evening
      assert.is_true(schedule.active(b, t(5, "01:59")))         -- into Saturday
      assert.is_false(schedule.active(b, t(5, "23:00")))        -- Saturday's own evening
      assert.is_false(schedule.active(b, t(4, "01:00")))        -- Friday morning is Thursday's
   end)

   it("analytics_scheduler --check prints the rows it would run and the problems", function()
      local d, sh = new_root()
      fake_engine(d, "eng")
      write_schedule(d, { '{ Engine = "eng", Always = true }', '{ Engine = "eng2", Start = "9:00" }' })
      local out, rc = sh("analytics_scheduler --check")
      assert.are.equal(1, rc, out)
      assert.matches("row 1: eng 24/7 %(" .. d:gsub("%p", "%%%0") .. "/opt/fmadio/etc/analytics/eng%)", out)
      assert.matches('row 2 %(eng2%): Engine: no engine "eng2"', out)
      assert.matches("row 2 %(eng2%): Stop: missing", out)
      -- a file that cannot be run, and a directory, are not engines
      write(d .. "/opt/fmadio/etc/analytics/noexec", "#!/bin/sh\n")
      write_schedule(d, { '{ Engine = "noexec", Always = true }', '{ Engine = "..", Always = true }' })
      out, rc = sh("analytics_scheduler --check")
      assert.are.equal(1, rc, out)
      assert.matches('row 1 %(noexec%): Engine: no engine "noexec"', out)
      assert.matches('row 2 %(%.%.%): Engine: no engine "%.%."', out)
      out = sh("analytics_scheduler --help")
      assert.matches("usage: analytics_scheduler", out)
   end)
end)

describe("analytics_scheduler", function()
   it("starts an engine in its window, stops it at the end, and starts it again in the next", function()
      local d, sh = new_root()
      fake_engine(d, "eng")
      local t0 = os.time()
      write_schedule(d, {
         ('{ Engine = "eng", Start = "%s", Stop = "%s" }'):format(at(2), at(5)),
         ('{ Engine = "eng", Start = "%s", Stop = "%s" }'):format(at(8), at(10)),
      })
      start_scheduler(d, sh, 30)
      wait_for("two windows", 20, function()
         local ev = events(d, "eng")
         return #ev >= 4 and ev
      end)
      C.pc_nap_ns(1.5e9)
      local log = stop_scheduler(d, sh)
      local ev = events(d, "eng")
      assert.are.same({ "start", "term", "start", "term" }, { ev[1].what, ev[2].what, ev[3].what, ev[4].what }, log)
      assert.are.equal(4, #ev, log)
      -- each within a second of its window's edges
      for k, edge in ipairs({ 2, 5, 8, 10 }) do
         local off = ev[k].t - t0
         assert.is_true(off >= edge - 1 and off < edge + 1.5, ("event %d at +%.2f s, window edge +%d s\n%s"):format(k, off, edge, log))
      end
      assert.matches("started eng pid %d+ for row 1", log)
      assert.matches("window closed: SIGTERM to eng", log)
      assert.matches("started eng pid %d+ for row 2", log)
      -- its output went to analytics_eng_YYYYMMDD_HHMM through the .cur link
      local cur = H.sh("readlink " .. d .. "/mnt/store0/log/analytics_eng.cur")
      assert.matches("^analytics_eng_%d%d%d%d%d%d%d%d_%d%d%d%d", cur)
      assert.matches("engine eng running", H.slurp(d .. "/mnt/store0/log/analytics_eng.cur"))
   end)

   it("restarts a crashing engine with growing delays", function()
      local d, sh = new_root()
      fake_engine(d, "crashy", { exit = 3 })
      -- a bad row beside it is reported and does not stop the good one
      write_schedule(d, { '{ Engine = "crashy", Always = true }', '{ Engine = "crashy2", Start = "7:60", Stop = "8:00" }' })
      start_scheduler(d, sh, 30)
      wait_for("four starts", 15, function() return #events(d, "crashy") >= 4 end)
      local log = stop_scheduler(d, sh)
      assert.matches('row 2 %(crashy2%): Engine: no engine "crashy2"', log)
      assert.matches('row 2 %(crashy2%): Start: "7:60" is not a time of day', log)
      local ev = events(d, "crashy")
      local delays = {}
      for w in log:gmatch("crashy exited 3 after [%d.]+ s; restart %d+ in (%d+) s") do delays[#delays + 1] = tonumber(w) end
      assert.are.same({ 1, 2, 4 }, { delays[1], delays[2], delays[3] }, log)
      local gaps = { ev[2].t - ev[1].t, ev[3].t - ev[2].t, ev[4].t - ev[3].t }
      for k = 1, 3 do
         local want = 2 ^ (k - 1)
         assert.is_true(gaps[k] >= want * 0.9 and gaps[k] < want + 1.5, ("gap %d is %.2f s, want about %d s"):format(k, gaps[k], want))
      end
   end)

   it("sends SIGKILL to an engine that ignores SIGTERM after the grace period", function()
      local d, sh = new_root()
      fake_engine(d, "stubborn", { ignore_term = true })
      write_schedule(d, { ('{ Engine = "stubborn", Start = "%s", Stop = "%s" }'):format(at(1), at(3)) })
      start_scheduler(d, sh, 30, "--grace 1")
      local log = wait_for("the SIGKILL", 15, function()
         local l = H.slurp(d .. "/sched.log") or ""
         return l:match("stubborn stopped") and l
      end)
      assert.matches("still running 1 s after SIGTERM: SIGKILL", log)
      assert.matches("stubborn stopped %(window closed%), exit 137", log)
      stop_scheduler(d, sh)
      -- nothing of its process group is left
      local pid = assert(log:match("started stubborn pid (%d+)"))
      assert.are.equal(-3, C.pc_kill(-tonumber(pid), 0), "process group " .. pid .. " is still there")  -- ESRCH
   end)

   it("reloads the schedule on SIGHUP and when the file changes", function()
      local d, sh = new_root()
      fake_engine(d, "one")
      fake_engine(d, "two")
      fake_engine(d, "three")
      write_schedule(d, { '{ Engine = "one", Always = true }' })
      sh("touch -d '2020-01-01' opt/fmadio/etc/analytics_schedule.lua")
      start_scheduler(d, sh, 40)
      wait_for("one", 10, function() return #events(d, "one") >= 1 end)
      -- same mtime: only the signal can tell the scheduler
      write_schedule(d, { '{ Engine = "two", Always = true }' })
      sh("touch -d '2020-01-01' opt/fmadio/etc/analytics_schedule.lua")
      C.pc_nap_ns(1.5e9)
      assert.are.equal(0, #events(d, "two"), "reloaded without a signal or a change")
      sh("kill -HUP $(cat sched.pid)")
      wait_for("two after SIGHUP", 10, function() return #events(d, "two") >= 1 end)
      wait_for("one stopped", 10, function() return #events(d, "one") >= 2 end)
      assert.are.equal("term", events(d, "one")[2].what)
      -- a change to the file is enough
      write_schedule(d, { '{ Engine = "two", Always = true }', '{ Engine = "three", Always = true }' })
      wait_for("three after the file changed", 10, function() return #events(d, "three") >= 1 end)
      -- a broken file keeps the running schedule
      write(d .. "/opt/fmadio/etc/analytics_schedule.lua", "return { Schedule = { ")
      C.pc_nap_ns(2e9)
      local log = stop_scheduler(d, sh)
      assert.matches("SIGHUP: reloaded", log)
      assert.matches("schedule changed: reloaded", log)
      assert.matches("keeping the previous schedule", log)
      assert.are.equal("1", H.sh("grep -c '^start' " .. d .. "/two.events"):match("%d+"), "two was restarted by the reloads")
   end)

   it("runs once per root: a second scheduler refuses to start", function()
      local d, sh = new_root()
      fake_engine(d, "solo")
      write_schedule(d, { '{ Engine = "solo", Always = true }' })
      start_scheduler(d, sh, 30)
      wait_for("solo", 10, function() return #events(d, "solo") >= 1 end)
      local out, rc = sh("timeout 10 analytics_scheduler --grace 1")
      assert.are.equal(1, rc, out)
      assert.matches("another analytics_scheduler %(pid %d+%) runs for " .. (d .. "/mnt/store0"):gsub("%p", "%%%0"), out)
      stop_scheduler(d, sh)
      assert.are.equal("1", H.sh("grep -c '^start' " .. d .. "/solo.events"):match("%d+"), "the second scheduler started solo")
   end)

   it("stops the engines a killed scheduler left running before it starts its own", function()
      local d, sh = new_root()
      fake_engine(d, "orphan")
      write_schedule(d, { '{ Engine = "orphan", Always = true }' })
      start_scheduler(d, sh, 30)
      wait_for("orphan", 10, function() return #events(d, "orphan") >= 1 end)
      -- timeout's child is the scheduler: SIGKILL it, leaving its engine
      sh("pkill -KILL -P $(cat sched.pid)")
      C.pc_nap_ns(300e6)
      assert.are.equal(1, #events(d, "orphan"), "the engine died with the scheduler")
      start_scheduler(d, sh, 30)
      wait_for("a fresh start", 10, function() return #events(d, "orphan") >= 3 end)
      local log = stop_scheduler(d, sh)
      local ev = events(d, "orphan")
      assert.are.same({ "start", "term", "start" }, { ev[1].what, ev[2].what, ev[3].what }, log)
      assert.matches("stopping [^\n]+/orphan %(process group %d+%), left running by an earlier scheduler", log)
   end)

   it("shifts windows by Scheduler.TimeOffset from time.lua", function()
      local d, sh = new_root()
      fake_engine(d, "late")
      write(d .. "/opt/fmadio/etc/time.lua", "Scheduler = { TimeOffset = 3e9 }\n")
      local t0 = os.time()
      write_schedule(d, { ('{ Engine = "late", Start = "%s", Stop = "%s" }'):format(at(1), at(3)) })
      start_scheduler(d, sh, 30)
      wait_for("start and stop", 15, function() return #events(d, "late") >= 2 end)
      local log = stop_scheduler(d, sh)
      local ev = events(d, "late")
      assert.is_true(ev[1].t - t0 >= 3.5, ("started at +%.2f s, before its shifted window (+4 s)\n%s"):format(ev[1].t - t0, log))
      assert.is_true(ev[2].t - t0 >= 5.5, ("stopped at +%.2f s, before its shifted end (+6 s)"):format(ev[2].t - t0))
      assert.matches("TimeOffset 3000000000 ns", log)
   end)
end)

describe("analytics_scheduler with push", function()
   it("runs push_pcap 24/7 and push_pcap_eod in a window while the active capture grows", function()
      local d, sh = new_root()
      -- ten seconds of traffic stamped from now on, written into the store at
      -- the pace of its timestamps
      local t_first = (os.time() + 1) * 1e9
      local out, rc = H.sh(("%s/pcapgen -p isp -n 2000 -s 10 -t %.0f -S 4 -o %s/in.pcap"):format(H.build, t_first, d))
      assert.are.equal(0, rc, out)
      for _, c in ipairs({ { "push_pcap.lua", "rt" }, { "push_pcap_eod.lua", "eod" } }) do
         write(("%s/opt/fmadio/etc/%s"):format(d, c[1]), ([[return { FollowStart = true, Target = {
            { Desc = "%s", Path = "%s/out/%s/%s-", Split = "--split-time 2e9", FileName = "--filename-epoch-sec" },
         } }]]):format(c[2], d, c[2], c[2]))
      end
      H.sh(("cp %s/etc/analytics/push_pcap_eod %s/opt/fmadio/etc/analytics/"):format(H.root, d))
      write_schedule(d, {
         '{ Engine = "push_pcap", Always = true }',
         ('{ Engine = "push_pcap_eod", Start = "%s", Stop = "%s" }'):format(at(3), at(7)),
      })
      sh(("( timeout 60 %s/fmadiolua %s/spec/pace_pcap.lua in.pcap | timeout 60 stream_capture --store-size 32M "
         .. "--chunk-size 4K --import - --name live > cap.log 2>&1 & echo $! > cap.pid ) >/dev/null 2>&1"):format(H.build, H.root))
      C.pc_nap_ns(300e6)
      start_scheduler(d, sh, 60, "--grace 10")
      -- each realtime split appears, complete, soon after its 2 s ends
      local seen = {}
      local deadline = C.pc_mono_ns() + 20e9
      while C.pc_mono_ns() < deadline do
         for _, f in ipairs(H.ls(d .. "/out/rt")) do
            if not f:match("pending$") and not seen[f] then seen[f] = C.pc_now_ns() end
         end
         if H.sh("kill -0 $(cat " .. d .. "/cap.pid) 2>/dev/null && echo run"):match("run") == nil then break end
         C.pc_nap_ns(100e6)
      end
      C.pc_nap_ns(1e9)
      local log = stop_scheduler(d, sh)
      if os.getenv("SPEC_VERBOSE") then io.stderr:write(log, H.slurp(d .. "/mnt/store0/log/analytics_push_pcap_eod.cur"), "\n") end
      local names = {}
      for f in pairs(seen) do names[#names + 1] = f end
      table.sort(names)
      assert.is_true(#names >= 4, "only " .. #names .. " realtime splits closed while traffic flowed\n" .. log)
      for _, f in ipairs(names) do
         local start = tonumber(f:match("rt%-(%d+)%.pcap$"))
         local late = tonumber(seen[f] - (start + 2) * 1e9) / 1e9
         assert.is_true(late < 2.5, ("%s appeared %.2f s after its split ended"):format(f, late))
      end
      -- SIGTERM finished the last split: every packet exactly once, nothing pending
      local got = {}
      for _, f in ipairs(H.ls(d .. "/out/rt")) do
         assert.is_nil(f:match("pending$"), "left pending: " .. f)
         for _, p in ipairs(H.read(d .. "/out/rt/" .. f)) do got[#got + 1] = p end
      end
      local want = H.read(d .. "/in.pcap")
      assert.are.equal(#want, #got, log)
      for k = 1, #want, 97 do assert.are.equal(want[k].data, got[k].data, "packet " .. k) end
      -- the end-of-day push ran only in its window and stopped cleanly: a
      -- prefix of the traffic, in complete files
      local eod = {}
      for _, f in ipairs(H.ls(d .. "/out/eod")) do
         assert.is_nil(f:match("pending$"), "left pending: " .. f)
         for _, p in ipairs(H.read(d .. "/out/eod/" .. f)) do eod[#eod + 1] = p end
      end
      assert.is_true(#eod > 0 and #eod < #want, ("eod pushed %d of %d packets"):format(#eod, #want))
      for k = 1, #eod, 97 do assert.are.equal(want[k].data, eod[k].data, "eod packet " .. k) end
      assert.matches("started push_pcap pid", log)
      assert.matches("started push_pcap_eod pid %d+ for row 2", log)
      assert.matches("window closed: SIGTERM to push_pcap_eod", log)
      assert.matches("push_pcap_eod stopped %(window closed%), exit 0", log)
      -- each engine logged on its own, with push's status lines
      local lg = d .. "/mnt/store0/log/"
      assert.matches("push %[rt +: stream_cat:true split:true%]", H.slurp(lg .. "analytics_push_pcap.cur"))
      assert.matches("push %[eod +: stream_cat:true split:true%]", H.slurp(lg .. "analytics_push_pcap_eod.cur"))
   end)
end)
