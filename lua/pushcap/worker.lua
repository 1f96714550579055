-- pushcap.worker: one push target, as one process.
--
-- store chunk -> decap -> BPF and FilterFrame on the inner packet -> the
-- split engine (names, pipe, transport, renames) -> the target.  After
-- every finished split the worker saves where the next split starts (a
-- record of a chunk), so a restarted worker carries on there: no gap, and
-- the split in progress is rewritten under the same name, not duplicated.
-- A split that could not be delivered goes to the target's delivery queue
-- (pushcap.redeliver), which re-sends it in the background while later
-- splits flow; the position moves past it once it is safely queued.
local ffi = require("ffi")
local C = require("pushcap.ffi")
local num = require("pushcap.num")
local paths = require("pushcap.paths")
local proc = require("pushcap.proc")
local redeliver = require("pushcap.redeliver")
local split = require("pushcap.split")
local splitopts = require("pushcap.splitopts")
local store = require("pushcap.store")

local M = {}

-- ---- saved position ----------------------------------------------------------
-- <store>/push/<config name>/: one directory per config, since two
-- schedules may both have a target "all".
function M.state_dir(config_path)
   return ("%s/push/%s"):format(paths.store, redeliver.config_name(config_path))
end

-- A target's saved position.  An offline run keeps its own, so pushing a
-- stored capture by hand never moves the realtime push's position.
function M.state_path(config_path, desc, offline)
   return ("%s/%s%s.pos"):format(M.state_dir(config_path), offline and "offline/" or "", desc)
end

-- Held by the worker pushing a target: a second one (another supervisor
-- on the same config, an offline run beside the realtime one, a worker
-- orphaned by a killed supervisor) would write the same files.
function M.lock_path(config_path, desc)
   return ("%s/%s.lock"):format(M.state_dir(config_path), desc)
end

-- Held by the supervisor: a name no Desc can take (a Desc never starts
-- with '.').
function M.supervisor_lock_path(config_path)
   return M.state_dir(config_path) .. "/.supervisor.lock"
end

-- What is pending delivery, for the supervisor's status lines.
function M.status_path(config_path, desc)
   return ("%s/%s.status"):format(M.state_dir(config_path), desc)
end

-- nil when there is none; nil and a message when the file exists but
-- cannot be read (starting at the live head then would skip data).
local function load_state(path)
   local f = io.open(path)
   if not f then return nil end
   local line = f:read("*l") or ""
   f:close()
   local cap, chunk, rec = line:match("^(%d+) (%d+) (%d+)$")
   if not cap then
      return nil, ("the saved position %s is unreadable (%q): remove it to start afresh"):format(path, line)
   end
   return { capture = tonumber(cap), chunk = tonumber(chunk), rec = tonumber(rec) }
end

-- Replaces the saved position; on failure the old file stays (a restart
-- then redoes more, never less) and the failure is logged.
local function save_state(path, capture, chunk, rec)
   local tmp = path .. ".tmp"
   local f, err = io.open(tmp, "w")
   local ok = f and f:write(("%d %s %d\n"):format(capture, num.str(chunk), rec))
   local closed = f and f:close()
   if ok and closed and C.pc_rename(tmp, path) == 0 then return true end
   os.remove(tmp)
   io.stderr:write(("push: cannot save the position in %s (%s); a restart redoes what came after the last saved one\n")
      :format(path, tostring(err or "write failed")))
   return false
end

-- ---- the pipeline ---------------------------------------------------------------
-- cfg: from pushcap.config; t: one of cfg.targets; opts.offline: a capture
-- name (push it to its end) or nil (follow the active capture).
-- Returns an exit status.
function M.run(cfg, t, opts)
   local out = function(s) io.stdout:write(s); io.stdout:flush() end
   local function log(s) out(s .. "\n") end
   local function fail(s)
      io.stderr:write("push ", t.desc, ": ", s, "\n")
      return 1
   end
   C.pc_signals_install()
   -- CPU pins the whole worker (the appliance pins stream_cat there); a
   -- --cpu list in SplitCmd pins it too
   local cpus = t.cpu and { t.cpu } or (t.res and t.res.cpus)
   if cpus then
      local ok, perr = splitopts.pin(cpus)
      if not ok then io.stderr:write("push ", t.desc, ": CPU ", table.concat(cpus, ","), ": ", perr, "\n") end
   end

   local dir = store.dir()
   if not store.exists(dir) then return fail("no capture store in " .. dir) end
   local st, err = store.open(dir, false)
   if not st then return fail(err) end

   -- which capture, and where in it
   local m
   if opts.offline then
      m = st:find(opts.offline)
      if not m then return fail("no capture named '" .. opts.offline .. "'") end
   else
      m = st:active()
      while not m and C.pc_signal_pending() == 0 do
         C.pc_sleep_ns(100e6)
         m = st:active()
      end
      if not m then return 0 end
   end
   local state_path = M.state_path(cfg.path, t.desc, opts.offline ~= nil)
   C.pc_mkdirs(state_path:match("^(.*)/"), 448)
   local lock, lerr = proc.lock(M.lock_path(cfg.path, t.desc))
   if not lock then return fail(lerr .. ": not starting a second push of this target") end
   local saved, serr = load_state(state_path)
   if serr then return fail(serr) end
   local start
   if saved and saved.capture == m.id then
      start = { chunk = saved.chunk, rec = saved.rec }
      log(("Resuming capture %s at chunk %d record %d"):format(m.name, saved.chunk, saved.rec))
   elseif opts.offline or t.follow_start then
      start = "begin"
   else
      start = "head"
   end
   local rd, rerr = st:reader(m, start)
   if not rd then return fail(rerr) end
   local r = rd.h
   local linktype = m.linktype or 1
   log(("push %s: capture %s (id %d) from chunk %s, mode %s"):format(t.desc, m.name, m.id,
      num.str(C.pc_store_reader_position(r)), t.mode))

   -- filters: decap, BPF and FilterFrame run in the store reader's
   -- threads (pc_store_ahead), a chunk at a time
   local filter = ffi.new("pc_filter")
   local bpf, frame_ok
   if t.bpf then
      local ebuf = ffi.new("char[512]")
      bpf = C.pc_bpf_compile(t.bpf, linktype, ebuf, 512)
      if bpf == nil then return fail("FilterBPF: " .. ffi.string(ebuf)) end
      bpf = ffi.gc(bpf, C.pc_bpf_free)
      filter.bpf = bpf
   end
   if t.filter_frame and t.filter_frame.tbl then
      frame_ok = ffi.new("uint8_t[512]")
      for k = 0, 511 do frame_ok[k] = t.filter_frame.tbl[k] and 1 or 0 end
      filter.frame_ok = frame_ok
   end
   -- decap runs only when something looks at the inner packet; the
   -- original frames are written unless Output is "decap"
   if t.decap and linktype == 1 then
      if t.output == "decap" then
         filter.decap = C.PC_DECAP_OUT
      elseif bpf or frame_ok then
         filter.decap = C.PC_DECAP_PEEK
      end
   end
   local need_decap = filter.decap ~= C.PC_DECAP_NONE
   local use_filter = (bpf or frame_ok or need_decap) and filter or nil
   local dstats = ffi.new("pc_decap_stats")
   local ahead   -- the reader's threads: started just before the loop
   local function close_ahead()
      if ahead then C.pc_store_ahead_free(ffi.gc(ahead, nil)) end
      ahead = nil
   end

   -- the engine, with our position saved after every split
   local cur_chunk = 0
   local aborted = false
   local complete = false        -- the input ended (offline: the capture's end)
   local partial_close = false   -- finishing early, on a stop
   local spool = paths.spool .. "/" .. t.desc
   C.pc_mkdirs(spool, 448)
   local engine
   -- the delivery queue; the worker stops its re-send helper on every way out
   local queue
   local function leave(code)
      close_ahead()
      if queue then queue:stop() end
      return code
   end
   -- (every split target has one: only a split with a spool copy, one that
   -- went through a process or an upload, can ever be queued)
   if t.mode ~= "lxc" then
      local qerr
      queue, qerr = redeliver.new({
         desc = t.desc, config_path = cfg.path, dir = redeliver.queue_dir(cfg.path, t.desc),
         status_path = M.status_path(cfg.path, t.desc), sink = t.res.sink,
         base_delay_ns = t.opts.retry_delay, post = t.post, out = log,
      })
      if not queue then return fail(qerr) end
      local ok, serr = queue:scan()
      if not ok then return fail(serr) end
   end
   -- A split whose delivery failed, made again from the store: records
   -- [cur.from, the record that closed it) of this capture through the same
   -- filter, as raw pcap into path.  Checked against the split's own packet
   -- count.  Returns true, or nil, a reason and whether waiting may help
   -- (a full spool disk).
   local function regenerate(cur, trig, path, chomp)
      if not cur.from then return nil, "where the split starts in the store is not known" end
      local to
      if trig == nil or (trig.wirelen == 0 and trig.rec == 0xffffffff) then
         to = { chunk = tonumber(C.pc_store_reader_position(r)), rec = 0 }
      else
         to = { chunk = tonumber(cur_chunk), rec = trig.rec }
      end
      local rd2, rerr = st:reader(m, { chunk = cur.from.chunk, rec = cur.from.rec })
      if not rd2 then return nil, rerr end
      local a2 = C.pc_store_ahead_new(rd2.h, 1, use_filter, ffi.new("pc_decap_stats"))
      if a2 == nil then return nil, "out of memory for a store reader" end
      local fd = C.pc_open_write(path)
      if fd < 0 then
         C.pc_store_ahead_free(a2)
         return nil, ("cannot create %s: %s"):format(path, proc.errstr(fd)), true
      end
      local w = C.pc_writer_open(fd, -1, linktype, 4 * 1024 * 1024)
      if w == nil then
         C.pc_close(fd)
         C.pc_store_ahead_free(a2)
         return nil, "out of memory for the pcap writer"
      end
      local pp, kp = ffi.new("pc_pkt *[1]"), ffi.new("uint8_t *[1]")
      local made, err, retry = 0, nil, false
      while true do
         local n = C.pc_store_ahead_next(a2, pp, kp)
         if n < 0 then err = ffi.string(C.pc_store_reader_error(rd2.h)) end
         if n <= 0 then break end
         local chunk = tonumber(C.pc_store_reader_chunk(rd2.h))
         if chunk > to.chunk then break end
         local pkts = pp[0]
         if chunk == to.chunk then
            local k = 0
            while k < n and pkts[k].rec < to.rec do k = k + 1 end
            n = k
         end
         if n > 0 then
            local cnt = kp[0] ~= nil and C.pc_pkt_select(pkts, n, kp[0]) or n
            for i = 0, cnt - 1 do
               if pkts[i].wirelen > 0 then made = made + 1 end
            end
            if C.pc_writer_put(w, pkts, cnt, chomp) < cnt then
               err, retry = proc.errstr(-C.pc_writer_errno(w)), true
               break
            end
         end
         if chunk >= to.chunk then break end
      end
      if not err and C.pc_writer_finish(w) < 0 then err, retry = proc.errstr(-C.pc_writer_errno(w)), true end
      C.pc_writer_free(w)
      C.pc_close(fd)
      C.pc_store_ahead_free(a2)
      local sst = ffi.new("pc_store_stats")
      C.pc_store_reader_stats(rd2.h, sst)
      -- (a corrupt chunk was skipped the first time too: the count tells)
      if not err and sst.lost_chunks > 0 then
         err = "the ring has overwritten part of it"
      elseif not err and made ~= cur.pkts then
         err = ("%d packets made again where the split had %d"):format(made, cur.pkts)
      end
      if err then return nil, err, retry end
      return true
   end

   if t.mode == "lxc" then
      engine = M.ring_output(t, log, state_path, function(chunk, rec) save_state(state_path, m.id, chunk, rec) end)
      if not engine then return 1 end
   else engine = split.new(splitopts.engine_config(t.opts, t.res, {
      spool_dir = spool,
      ticks_close_only = true,
      pipe_external = t.compress == "external",
      out = out,
      queue = queue and function(cur, reason)
         if partial_close then
            return nil, "push is stopping and this split is partial: it is made again from the store when push resumes"
         end
         return queue:add(cur, reason)
      end,
      -- while a full disk is waited out, the queue goes on (and frees the spool)
      idle = queue and function() queue:tick() end,
      -- no spool copy as a split goes: a failed one is made again from the store
      regenerate = queue and regenerate,
      on_split_open = function(cur, p) cur.from = { chunk = tonumber(cur_chunk), rec = p.rec } end,
      on_split_done = function(cur, trig)
         if aborted then return end -- an earlier split is redone: no position past it
         if not cur.delivered and not cur.queued then
            -- keep the saved position before this split: the restarted
            -- worker writes it again from the store
            aborted = true
            return
         end
         if trig ~= nil then
            if trig.wirelen == 0 and trig.rec == 0xffffffff then
               save_state(state_path, m.id, C.pc_store_reader_position(r), 0)
            else
               save_state(state_path, m.id, cur_chunk, trig.rec)
            end
         end
         if cur.delivered then
            -- the remote takes splits again: no need to wait out the backoff
            if queue then queue:nudge() end
            if t.post then
               local rc = proc.run_sh(t.post, { cur.name })
               log(("Post [%s %s] exited %d"):format(t.post, cur.name, rc))
            end
         end
         -- a queued split runs Post once the queue delivers it
      end,
   })) end

   -- One chunk's packets, filtered by the reader's threads (keep: NULL when
   -- the filter cannot drop any): the kept ones moved to the front, in place.
   local function select(pkts, n, keep)
      if keep == nil then return pkts, n end
      local last_ts, last_rec = pkts[n - 1].ts, pkts[n - 1].rec
      local cnt = C.pc_pkt_select(pkts, n, keep)
      -- packets the filter dropped still move time on, so a time split
      -- closes on time: a tick at the chunk's last timestamp
      if cnt < n and (cnt == 0 or pkts[cnt - 1].ts < last_ts) then
         local tick = pkts[cnt]
         tick.ts = last_ts
         tick.caplen, tick.wirelen, tick.data = 0, 0, nil
         tick.rec = last_rec + 1
         cnt = cnt + 1
      end
      return pkts, cnt
   end

   ahead = C.pc_store_ahead_new(r, 0, use_filter, dstats)
   if ahead == nil then return leave(fail("out of memory (or no thread) for the store reader")) end
   -- the threads use the reader and the filter: this frees them first,
   -- whatever order the collector finds them in (close_ahead does it on
   -- every way out)
   ahead = ffi.gc(ahead, function(a) C.pc_store_ahead_free(a); return rd, filter, bpf, frame_ok end)
   local stats = ffi.new("pc_reader_stats")
   local sst = ffi.new("pc_store_stats")
   local last_ts = num.i64(0)
   local status = 0
   local idle_tick = ffi.new("pc_pkt[1]")
   local chunk_pkts, chunk_keep = ffi.new("pc_pkt *[1]"), ffi.new("uint8_t *[1]")
   while true do
      local n = C.pc_store_ahead_next(ahead, chunk_pkts, chunk_keep)
      if n > 0 then
         local pkts = chunk_pkts[0]
         cur_chunk = C.pc_store_reader_chunk(r)
         last_ts = num.i64(pkts[n - 1].ts)
         local next_rec = pkts[n - 1].rec + 1
         local out, cnt = select(pkts, n, chunk_keep[0])
         engine:feed(out, cnt, linktype, cur_chunk, next_rec)
         if engine.exit then return leave(engine.exit) end
      elseif n == 0 then
         if C.pc_store_reader_ended(r) ~= 0 or opts.offline then
            complete = true
            break
         end
         -- idle: the writer's clock closes time splits when nothing comes
         local tick = st:info().tick_ts
         if tick > last_ts then
            idle_tick[0].ts = tick
            idle_tick[0].rec = 0xffffffff
            engine:feed(idle_tick, 1, linktype)
            last_ts = num.i64(tick)
         end
         C.pc_sleep_ns(20e6)
      else
         status = fail(ffi.string(C.pc_store_reader_error(r)))
         break
      end
      if C.pc_mono_ns() >= (engine.next_progress or 0) then
         C.pc_store_reader_stats(r, sst)
         stats.bytes_read, stats.packets = sst.bytes_cap, sst.packets
         engine:progress(stats)
      end
      -- queued re-sends: a waitpid(WNOHANG), or starting a helper when due
      if queue then queue:tick() end
      if C.pc_signal_pending() ~= 0 or aborted then break end
   end
   close_ahead()
   if aborted then
      io.stderr:write(("push %s: a split could not be delivered; exiting so that it is redone from the store\n")
         :format(t.desc))
      return leave(3)
   end
   -- a split closed early by a stop is partial: it is made again, whole,
   -- from the store when push resumes, so it must not wait in the queue
   -- (an old partial copy could land after the whole one)
   partial_close = not complete
   engine:finish(C.pc_store_reader_ended(r) ~= 0 and opts.offline, last_ts)
   if aborted then
      io.stderr:write(("push %s: the last split could not be delivered; exiting so that it is redone from the store\n")
         :format(t.desc))
      return leave(3)
   end
   -- offline: done only when everything is delivered (or the operator stops us)
   if queue and opts.offline then
      while queue:count() > 0 and C.pc_signal_pending() == 0 do
         queue:tick()
         C.pc_sleep_ns(50e6)
      end
   end
   if queue then queue:stop() end
   C.pc_store_reader_stats(r, sst)
   if opts.offline and complete and not (queue and queue:count() > 0) then
      -- pushed to its end and delivered: running it again pushes it all again
      os.remove(state_path)
   elseif complete or C.pc_signal_pending() == 0 then
      -- everything read was delivered or queued (or kept, and logged)
      save_state(state_path, m.id, C.pc_store_reader_position(r), 0)
   end
   if sst.lost_chunks > 0 or sst.corrupt_chunks > 0 then
      io.stderr:write(("push %s: lost %s chunks (%s packets) overwritten before they were read, %s corrupt chunks (%s packets)\n")
         :format(t.desc, num.str(sst.lost_chunks), num.str(sst.lost_pkts), num.str(sst.corrupt_chunks),
            num.str(sst.corrupt_pkts)))
      status = 1
   end
   if need_decap then
      log(("Decap: %s packets, %s decapsulated (vlan %s qinq %s mpls %s gre %s erspan %s vxlan %s geneve %s)")
         :format(num.str(dstats.packets), num.str(dstats.decapped), num.str(dstats.vlan), num.str(dstats.qinq),
            num.str(dstats.mpls), num.str(dstats.gre),
            num.str(dstats.erspan1 + dstats.erspan2 + dstats.erspan3), num.str(dstats.vxlan), num.str(dstats.geneve)))
   end
   log(("Total Splits %d Total Pkts %s Lost Pkts %d Failed Splits %d"):format(engine.splits or 0, num.str(sst.packets),
      engine.lost_pkts, engine.failed_splits))
   if queue and queue:count() > 0 then
      log(("Pending Splits %d (queued in %s)"):format(queue:count(), queue.dir))
   end
   log("Complete")
   if engine.lost_pkts > 0 or engine.failed_splits > 0 then status = 1 end
   return status
end

-- ---- LXC: into an lxc_ring instead of split files ----------------------------------
-- Offers the engine's feed/progress/finish; the position is saved once a
-- second, after the packets before it are in the ring.
function M.ring_output(t, log, state_path, save)
   local ebuf = ffi.new("char[512]")
   local ring = C.pc_ring_open_tx(t.path, 1, t.timeout_ring, 0, ebuf, 512)
   if ring == nil then
      io.stderr:write("push ", t.desc, ": ", ffi.string(ebuf), "\n")
      return nil
   end
   log(("RING[%-50s] 00 : CPU: %3d FilterBPF:[%s] FilterFrame:[%s]"):format(t.path, t.cpu or 0, t.bpf or "",
      t.filter_frame and t.filter_frame.expr or "(null)"))
   local o = { lost_pkts = 0, failed_splits = 0, next_save = 0 }
   function o:feed(pkts, n, _, chunk, next_rec)
      local done = 0
      local warned = false
      while done < n do
         done = done + C.pc_ring_put(ring, pkts + done, n - done)
         if done < n then
            if C.pc_signal_pending() ~= 0 then return end
            if t.ring_timeout_exit then
               -- the appliance's consumer restart: start again from now
               os.remove(state_path)
               log("RING wait for drain timeout: the consumer stalled; exiting to restart from the current time")
               self.exit = 4
               return
            end
            if not warned then
               log("RING wait for drain timeout: the consumer stalled; still waiting, nothing dropped")
               warned = true
            end
         end
      end
      if chunk and C.pc_mono_ns() >= self.next_save then
         save(chunk, next_rec)
         self.next_save = C.pc_mono_ns() + 1e9
      end
   end
   function o:progress() end
   function o:finish(at_end, ts)
      if at_end then C.pc_ring_put_eof(ring, ts) end
      C.pc_ring_close(ring)
   end
   return o
end

return M
