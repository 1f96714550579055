-- pushcap.split: the split engine shared by pcap_split and push.
--
-- Per batch of packets it asks the C splitter where the next split starts
-- (pc_split_scan), hands whole runs to the C pcap writer, and does the
-- per-split work itself: close the old split (wait for its pipeline, run
-- the close script, rename .pending, chown), run the new script, name and
-- open the next one.  A split whose pipeline fails is re-sent from a raw
-- spool copy: pcap_split writes that copy as it goes, re-sends it at once,
-- a few times, and when that keeps failing keeps the copy and the log says
-- where; push makes the copy only for a split that failed, from the data
-- still in the store (cfg.regenerate), and hands it to its delivery queue
-- (cfg.queue, pushcap.redeliver), which retries it in the background while
-- later splits flow.  Nothing accepted from the
-- input is dropped without a log line that counts it.  A recognised pipe command (sink.comp) is compressed
-- in-process by one pc_comp per engine, attached to each split's writer;
-- a re-send from the spool compresses the raw copy again the same way.
local ffi = require("ffi")
local C = require("pushcap.ffi")
local num = require("pushcap.num")
local proc = require("pushcap.proc")
local sinkmod = require("pushcap.sink")
local slog = require("pushcap.splitlog")

local M = {}
local Engine = {}
Engine.__index = Engine

local BATCH = 1024
M.BATCH = BATCH
local i64 = num.i64

-- cfg fields:
--   split = "time"|"byte", target (int64/number), roundup, roll_period, chomp
--   prefix, suffix, timestring (function from pushcap.naming), startend (bool)
--   sink (from pushcap.sink.new), script_new, script_close, owner {uid, gid}
--   spool_dir (nil = no spool), retries, retry_delay_ns, out (log function)
--   queue (push): function(cur, reason) -> true | nil, err.  A split whose
--   upload or rename fails is handed to it with its spool copy (cur.spool)
--   instead of being re-sent here; the queue owns the copy from then on.
--   idle (push): called while the engine waits out a full disk
--   regenerate (push): function(cur, trigger_pkt, path, chomp) -> true |
--   nil, err, retry: writes the raw pcap of split cur again, from the
--   store, into path (retry: a full disk, worth waiting out); with it no
--   spool copy is written as a split goes
--   on_split_open (push): function(cur, first_pkt), when a split opens
--   pipe_external (true: the pipe command runs as a process even when
--   pushcap.compress recognises it; push's Compress = "external")
function M.new(cfg)
   local e = setmetatable({ cfg = cfg }, Engine)
   local sp = ffi.new("pc_split")
   sp.mode = cfg.split == "time" and C.PC_SPLIT_TIME or C.PC_SPLIT_BYTE
   sp.target = i64(cfg.target)
   sp.roundup = cfg.roundup and i64(cfg.roundup) or sp.target / 4
   sp.chomp = cfg.chomp or 0
   sp.roll_period = cfg.roll_period and i64(cfg.roll_period) or 0
   sp.tz_offset = i64(C.pc_tz_offset(os.time())) * num.NS
   e.sp = sp
   e.pkts = ffi.new("pc_pkt[?]", BATCH)
   e.log = slog.new(cfg.out or io.write)
   e.t0 = C.pc_mono_ns()
   e.total_bytes, e.total_pkts, e.splits = 0, 0, 0
   e.lost_pkts, e.lost_bytes, e.failed_splits = 0, 0, 0
   e.prev_start = i64(0)
   e.prev_boundary = i64(0)
   if cfg.pipe_external then sinkmod.force_external(cfg.sink) end
   local spec = cfg.sink.comp
   if spec then
      local ebuf = ffi.new("char[256]")
      local comp = C.pc_comp_new(spec.kind, spec.level, spec.threads, ebuf, 256)
      if comp == nil then
         e.log:err(("in-process compression for '%s' unavailable (%s): running it as a command")
            :format(cfg.sink.pipe_cmd, ffi.string(ebuf)))
         sinkmod.force_external(cfg.sink)
      else
         e.comp = ffi.gc(comp, C.pc_comp_free)
      end
   end
   return e
end

-- ---- per split -------------------------------------------------------------
function Engine:name_for(start_ts, end_ts)
   local c = self.cfg
   return c.sink.name_prefix .. c.prefix .. c.timestring(start_ts, end_ts) .. c.suffix
end

function Engine:open_split(boundary, first_ts, linktype, first_pkt)
   local c, sp = self.cfg, self.sp
   if c.script_new then
      local rc = proc.run_sh(c.script_new)
      self.log:script(c.script_new, rc)
   end
   local start = c.split == "time" and boundary or i64(first_ts)
   local end_ts = c.split == "time" and boundary + sp.target or nil
   local name = self:name_for(start, end_ts)
   local cur = { name = name, pending = name .. ".pending", start = start,
                 wall0 = C.pc_now_ns(), boundary = boundary }
   self.cur = cur
   self.splits = self.splits + 1
   if c.on_split_open and first_pkt then c.on_split_open(cur, first_pkt) end
   self:start_output(cur, linktype)
   self.log:new_split(self, cur, first_ts)
end

function Engine:start_output(cur, linktype)
   local c = self.cfg
   cur.spool_fd = -1
   if c.spool_dir and sinkmod.needs_spool(c.sink) and not c.regenerate then
      -- a raw copy lets a failed pipeline be re-run without the input
      local base = cur.pending:match("([^/]*)$")
      cur.spool = c.spool_dir .. "/" .. base .. ".raw"
      local fd = C.pc_open_write(cur.spool)
      if fd < 0 then
         self.log:err(("cannot create spool copy %s: %s; a failed upload of this split cannot be re-sent")
            :format(cur.spool, proc.errstr(fd)))
         cur.spool = nil
      else
         cur.spool_fd = fd
      end
   end
   local st, err = sinkmod.start(c.sink, cur.pending)
   if not st then
      self.log:err("cannot start output for " .. cur.pending .. ": " .. err)
      cur.broken = err
      st = { pids = {}, write_fd = C.pc_open_write("/dev/null") }
   end
   cur.st = st
   self.log:cmd(c.sink:write_cmd(cur.pending))
   cur.w = C.pc_writer_open(st.write_fd, cur.spool_fd, linktype, 4 * 1024 * 1024)
   if cur.w == nil then
      sinkmod.finish(st)
      error("out of memory for the pcap writer")
   end
   sinkmod.attach(st, cur.w)
   -- each split is a new compressed stream; the spool copy stays plain
   if self.comp then C.pc_writer_set_comp(cur.w, self.comp) end
end

-- Writes n packets from p into the open split, riding out write failures.
function Engine:write(p, n)
   local cur = self.cur
   local w = cur.w
   local done = C.pc_writer_put(w, p, n, self.sp.chomp)
   while done < n do
      if not self:write_failed(cur) then
         self:count_lost(p + done, n - done)
         return
      end
      done = done + C.pc_writer_put(w, p + done, n - done, self.sp.chomp)
   end
end

function Engine:count_lost(p, n)
   for i = 0, n - 1 do
      if p[i].wirelen > 0 then
         self.lost_pkts = self.lost_pkts + 1
         self.lost_bytes = self.lost_bytes + 16 + p[i].caplen
      end
   end
end

-- A flush failed.  A dead pipeline (EPIPE) is not retried here: the rest of
-- the split goes to the spool only and the whole split is re-sent at close.
-- A full or failing disk is retried with backoff until it takes the data or
-- a signal asks us to stop.  Returns false when the data cannot be written.
function Engine:write_failed(cur)
   local c = self.cfg
   local errno = C.pc_writer_errno(cur.w)
   if errno == 32 and (cur.st.pids[1] or cur.st.upload) then -- EPIPE: a process or upload died
      if not cur.broken then cur.broken, cur.epipe = "output pipeline closed its input early", true end
      -- keep writing into nothing, so the spool copy still gets every byte
      local devnull = C.pc_open_write("/dev/null")
      C.pc_close(cur.st.write_fd)
      cur.st.write_fd = devnull
      C.pc_writer_retarget(cur.w, devnull)
      if cur.spool_fd < 0 and not c.regenerate then
         self.log:err(("output pipeline for %s died and there is no spool copy: this split's packets are lost")
            :format(cur.pending))
      end
      return true
   end
   cur.failures = (cur.failures or 0) + 1
   local delay = math.min(c.retry_delay_ns * 2 ^ math.min(cur.failures - 1, 6), 60e9)
   self.log:err(("write failure. possibly out of disk space: %s (%s); retrying in %.1f s")
      :format(proc.errstr(errno), cur.pending, delay / 1e9))
   return self:wait(delay)
end

-- Sleeps ns, calling cfg.idle every 100 ms meanwhile: push's delivery queue
-- keeps draining, which is what frees a spool disk its queued splits
-- filled.  Returns false when a signal asks us to stop.
function Engine:wait(ns)
   local idle = self.cfg.idle
   local t_end = C.pc_mono_ns() + ns
   while true do
      if idle then idle() end
      local left = tonumber(t_end - C.pc_mono_ns())
      if left <= 0 then return true end
      if C.pc_sleep_ns(idle and math.min(left, 100e6) or left) < 0 or C.pc_signal_pending() ~= 0 then
         return false
      end
   end
end

-- Closes the open split.  snap is a copy of the splitter taken before the
-- next split began; trigger_ts is the record that caused the close (nil at
-- the end of input); next_boundary is the next split's boundary (time mode).
function Engine:close_split(snap, trigger_ts, next_boundary, final, trigger_pkt)
   local cur, c = self.cur, self.cfg
   if not cur then return end
   self.cur = nil
   -- flush what is buffered and end the compressed stream (without a
   -- compressor this is a flush); a full disk is waited out like any write
   while C.pc_writer_finish(cur.w) < 0 do
      if not self:write_failed(cur) then
         self.lost_bytes = self.lost_bytes + tonumber(C.pc_writer_buffered(cur.w))
         cur.broken = cur.broken or "could not write the end of the split"
         break
      end
   end
   local ok, err = sinkmod.finish(cur.st)
   -- the pipeline's own reason (an exit code, libcurl's message) says more
   -- than the EPIPE its end caused
   if not ok then cur.broken = (cur.epipe or not cur.broken) and err or cur.broken end
   if cur.spool_fd >= 0 then C.pc_close(cur.spool_fd) end
   C.pc_writer_free(cur.w)
   cur.pkts = tonumber(snap.pkts)
   if cur.broken and c.queue then self:regen(cur, trigger_pkt) end
   if cur.broken then
      if cur.spool and c.queue then
         self:enqueue(cur, cur.broken)
      elseif cur.spool then
         self:resend(cur)
      elseif c.queue then
         -- push: neither delivered nor queued, so the worker stops without
         -- saving its position and this split is made again from the store
         cur.failed = true
         self.failed_splits = self.failed_splits + 1
         self.log:err(("output for %s failed (%s) and it cannot be queued: it is made again from the store")
            :format(cur.pending, cur.broken))
      else
         cur.failed = true
         self.failed_splits = self.failed_splits + 1
         self.lost_pkts = self.lost_pkts + tonumber(snap.pkts)
         self.lost_bytes = self.lost_bytes + tonumber(snap.bytes)
         self.log:err(("output for %s failed (%s) with no spool copy: %s packets lost")
            :format(cur.pending, cur.broken, num.str(snap.pkts)))
      end
   elseif cur.spool and not c.queue then
      -- pcap_split: a failed rename is not re-sent, so the copy has done its job
      C.pc_unlink(cur.spool)
   end
   local first, last = snap.first_ts, snap.last_ts
   local trig = trigger_ts and i64(trigger_ts) or i64(last)
   local wall = C.pc_now_ns() - cur.wall0
   local span = (final and i64(last) or trig) - i64(first)
   if snap.pkts == 0 then span = i64(0) end
   -- byte mode startend names end at the file's last packet
   if c.split ~= "time" and c.startend then
      cur.name = self:name_for(cur.start, snap.pkts > 0 and i64(last) or cur.start)
   end
   self.log:finished(self, cur, snap, trig, wall, span, final)
   if c.script_close then
      local args
      if c.split == "time" or final then
         local a, b
         if final then
            a, b = self.prev_boundary, c.split == "time" and cur.boundary or i64(0)
            if c.split ~= "time" then a = i64(0) end
         else
            a, b = cur.boundary, next_boundary
         end
         args = { cur.name, num.str(snap.bytes), num.str(snap.pkts), num.str(wall), num.str(span),
                  num.str(a), num.str(b), num.str(first), num.str(last), num.str(trig) }
      else
         args = { c.sink:describe(cur.name), num.str(snap.bytes), num.str(snap.pkts), num.str(wall),
                  num.str(span), num.str(first), num.str(last) }
      end
      local rc = proc.run_sh(c.script_close, args)
      self.log:script(c.script_close .. " " .. table.concat(args, " "), rc)
   end
   if cur.failed then
      if c.sink.mode == "file" then C.pc_unlink(cur.pending) end
   elseif not cur.queued then
      if c.owner and c.sink.mode == "file" then
         local rc = C.pc_chown(cur.pending, c.owner.uid, c.owner.gid)
         if rc < 0 then self.log:err(("chown %s: %s"):format(cur.pending, proc.errstr(rc))) end
      end
      local rerr
      cur.delivered, rerr = self:rename(cur)
      if c.queue and not cur.delivered then self:regen(cur, trigger_pkt) end
      if c.queue and cur.spool then
         if cur.delivered then
            C.pc_unlink(cur.spool)
         else
            -- push: the queue sends it again from the copy and renames it
            self:enqueue(cur, rerr)
         end
      elseif c.queue and not cur.delivered then
         cur.failed = true
         self.failed_splits = self.failed_splits + 1
         self.log:err(("%s could not be renamed (%s) nor queued: it is made again from the store"):format(cur.name, rerr))
      end
   end
   self.prev_boundary = cur.boundary
   -- push: a split neither delivered nor queued is made again from the
   -- store after a restart, so nothing after it may go out (or move the
   -- saved position past it) meanwhile
   if c.queue and not cur.delivered and not cur.queued then self.halted = true end
   -- push records its position and runs Post here; trigger_pkt (the first
   -- record of the next split) is valid only during the call
   if c.on_split_done then c.on_split_done(cur, trigger_pkt) end
end

-- Push: the raw copy of split cur, whose delivery failed, made again from
-- the store into the spool (cur.spool) for the queue.  A full spool disk
-- is waited out (the queue drains meanwhile); when the store cannot give
-- the split back (the ring overwrote it) or a signal asks us to stop,
-- cur.spool stays nil: the split is then neither delivered nor queued, and
-- push redoes it from the store after a restart (or counts what the ring
-- took as lost).
function Engine:regen(cur, trigger_pkt)
   local c = self.cfg
   if cur.spool or not c.regenerate or not c.spool_dir or not sinkmod.needs_spool(c.sink) then return end
   -- stopping: the split is made again, whole, when push resumes
   if C.pc_signal_pending() ~= 0 then return end
   local path = c.spool_dir .. "/" .. cur.pending:match("([^/]*)$") .. ".raw"
   local failures = 0
   while true do
      local ok, err, retry = c.regenerate(cur, trigger_pkt, path, self.sp.chomp)
      if ok then
         cur.spool = path
         self.log:info(("%s made again from the store for re-sending (%s packets)"):format(cur.name, cur.pkts))
         return
      end
      C.pc_unlink(path)
      if not retry then
         self.log:err(("cannot make %s again from the store for re-sending: %s"):format(cur.name, err))
         return
      end
      failures = failures + 1
      local delay = math.min(c.retry_delay_ns * 2 ^ math.min(failures - 1, 6), 60e9)
      self.log:err(("write failure. possibly out of disk space: %s (%s); retrying in %.1f s")
         :format(err, path, delay / 1e9))
      if not self:wait(delay) then return end
   end
end

-- Push: hands a split whose delivery failed to the queue (cfg.queue) with
-- its spool copy.  When the queue cannot take it the split counts as
-- failed: push then stops the worker without saving its position, so the
-- split is made again from the store.
function Engine:enqueue(cur, reason)
   local ok, err = self.cfg.queue(cur, reason)
   if ok then
      cur.queued = true
      return true
   end
   C.pc_unlink(cur.spool)
   cur.failed = true
   self.failed_splits = self.failed_splits + 1
   self.log:err(("%s could not be queued for re-sending (%s): it is not delivered"):format(cur.name, err))
   return false
end

-- pcap_split: re-runs the split's pipeline from its spool copy until it
-- succeeds, at most cfg.retries times, waiting (backoff and jitter) in
-- between; later splits wait too.
function Engine:resend(cur)
   local c = self.cfg
   for attempt = 1, c.retries do
      local delay = math.min(c.retry_delay_ns * 2 ^ (attempt - 1), 60e9)
      -- jitter keeps many targets from retrying in lock step
      delay = delay * (0.75 + 0.5 * math.random())
      self.log:err(("output for %s failed (%s); re-sending from %s, attempt %d of %d in %.1f s")
         :format(cur.pending, cur.broken, cur.spool, attempt, c.retries, delay / 1e9))
      if C.pc_sleep_ns(delay) < 0 then break end
      -- not self.pkts: the batch being fed is still in use
      self.resend_pkts = self.resend_pkts or ffi.new("pc_pkt[?]", BATCH)
      local ok, err = M.send_spool(c.sink, self.comp, cur.spool, cur.pending, self.resend_pkts)
      if ok then
         C.pc_unlink(cur.spool)
         cur.broken = nil
         return true
      end
      cur.broken = err
   end
   -- keep the data: the raw pcap stays in the spool under the final name
   local kept = cur.spool:gsub("%.pending%.raw$", ".unsent.pcap")
   C.pc_rename(cur.spool, kept)
   self.failed_splits = self.failed_splits + 1
   cur.failed = true
   self.log:err(("giving up on %s after %d attempts (%s); its packets are kept uncompressed in %s")
      :format(cur.name, c.retries, cur.broken, kept))
   return false
end

-- Sends a finished split again from its raw spool copy (plain pcap) into
-- sink under the name pending: through the pipe command as a process, or
-- compressed in-process with comp (a pc_comp, nil for none) exactly as the
-- first attempt was, so the result is byte for byte the same.  pkts is a
-- pc_pkt[BATCH] to read into (nil: one is made).  Shared by pcap_split's
-- re-sends and push's delivery queue, whose helper passes interruptible:
-- a SIGTERM/SIGINT then ends the attempt.  Returns true or nil, err.
function M.send_spool(sink, comp, spool, pending, pkts, interruptible)
   if not comp then
      local fd = C.pc_open_read(spool)
      if fd < 0 then return nil, ("cannot read %s: %s"):format(spool, proc.errstr(fd)) end
      local st, err = sinkmod.start(sink, pending, fd)
      local ok
      if st then ok, err = sinkmod.finish(st) end
      C.pc_close(fd)
      return ok, err
   end
   local fd = C.pc_open_read(spool)
   if fd < 0 then return nil, ("cannot read %s: %s"):format(spool, proc.errstr(fd)) end
   local ebuf = ffi.new("char[512]")
   local rd = C.pc_reader_open(fd, ebuf, 512)
   if rd == nil then
      C.pc_close(fd)
      return nil, ("cannot read %s: %s"):format(spool, ffi.string(ebuf))
   end
   local st, err = sinkmod.start(sink, pending)
   if not st then
      C.pc_reader_close(rd)
      C.pc_close(fd)
      return nil, err
   end
   local w = C.pc_writer_open(st.write_fd, -1, C.pc_reader_linktype(rd), 4 * 1024 * 1024)
   if w == nil then
      sinkmod.finish(st)
      error("out of memory for the pcap writer")
   end
   sinkmod.attach(st, w)
   C.pc_writer_set_comp(w, comp)
   pkts = pkts or ffi.new("pc_pkt[?]", BATCH)
   local werr
   while not err and not werr do
      if interruptible and C.pc_signal_pending() ~= 0 then
         err = "stopped by a signal"
         break
      end
      local n = C.pc_reader_next(rd, pkts, BATCH)
      if n < 0 then err = "spool copy: " .. ffi.string(C.pc_reader_error(rd)) end
      if n <= 0 then break end
      if C.pc_writer_put(w, pkts, n, 0) < n then
         werr = "write failed: " .. proc.errstr(-C.pc_writer_errno(w))
      end
   end
   if not err and not werr and C.pc_writer_finish(w) < 0 then
      werr = "write failed: " .. proc.errstr(-C.pc_writer_errno(w))
   end
   C.pc_writer_free(w)
   C.pc_reader_close(rd)
   C.pc_close(fd)
   local ok, ferr = sinkmod.finish(st)
   if err then return nil, err end
   -- the pipeline's own reason beats the EPIPE its end caused
   if not ok then return nil, ferr end
   if werr then return nil, werr end
   return true
end

-- Renames the finished split to its final name.  pcap_split retries a
-- failed rename a few times, then leaves the .pending (and the log says
-- so); push tries once and hands a failure to its queue.  Returns true, or
-- false and the reason.
function Engine:rename(cur)
   local c = self.cfg
   local final = cur.name
   local tries = c.queue and 1 or c.retries + 1
   local detail
   for attempt = 1, tries do
      local ok
      ok, detail = c.sink:rename(cur.pending, final)
      if ok then
         if detail then self.log:cmd_done(detail) end
         return true
      end
      self.log:err(("rename failed: %s (attempt %d)"):format(detail, attempt))
      if attempt < tries and C.pc_sleep_ns(c.retry_delay_ns * attempt) < 0 then break end
   end
   if c.queue then return false, detail end
   self.failed_splits = self.failed_splits + 1
   self.log:err(("%s is complete but could not be renamed; it is kept as %s"):format(final, cur.pending))
   return false, detail
end

-- ---- feeding ---------------------------------------------------------------
-- Splits and writes one batch of n packets (NOP ticks included).
function Engine:feed(pkts, n, linktype)
   local sp = self.sp
   local i = 0
   while i < n do
      local j = C.pc_split_scan(sp, pkts, i, n)
      if j > i and self.cur then self:write(pkts + i, j - i) end
      if j < n then
         local ts = pkts[j].ts
         local snap = self.cur and ffi.new("pc_split", sp)
         local boundary = C.pc_split_begin(sp, ts)
         if pkts[j].wirelen == 0 and self.cfg.ticks_close_only then
            -- push: a time tick closes the split that is due, but only a
            -- packet opens the next one (no empty files while idle)
            if snap then self:close_split(snap, ts, boundary, false, pkts[j]) end
            sp.open = 0
            j = j + 1
         else
            if snap then self:close_split(snap, ts, boundary, false, pkts[j]) end
            if self.halted then return end
            self:open_split(boundary, ts, linktype, pkts[j])
            -- pc_split_begin reset the counters; record j is scanned again
            -- and can never start another split
         end
      end
      i = j
   end
   if n > 0 then self.last_ts = pkts[n - 1].ts end
end

-- The per-second progress line, when a second has passed.
function Engine:progress(stats)
   local now = C.pc_mono_ns()
   if now >= (self.next_progress or 0) then
      if self.next_progress then self.log:progress(self, stats, now) end
      self.next_progress = now + 1e9
   end
end

-- Closes the split still open at the end of the input.
function Engine:finish()
   if self.cur then self:close_split(ffi.new("pc_split", self.sp), nil, nil, true) end
   if self.sp.roll_blocked > 0 then
      self.log:info(("Disable splitter: %s records after the roll time were kept in the last file")
         :format(num.str(self.sp.roll_blocked)))
   end
end

-- Reads everything from a pc_reader.  Returns the number of the signal that
-- stopped it (0 at end of input) and the reader error text, if any.
function Engine:run(reader)
   local pkts = self.pkts
   local linktype = C.pc_reader_linktype(reader)
   local stats = ffi.new("pc_reader_stats")
   local rerr
   self:progress(stats)
   while true do
      local n = C.pc_reader_next(reader, pkts, BATCH)
      if n <= 0 then
         if n < 0 and n ~= C.PC_ERR_INTR then rerr = ffi.string(C.pc_reader_error(reader)) end
         break
      end
      -- pcapng announces its linktype with the first interface, before a packet
      if linktype == 0 then linktype = C.pc_reader_linktype(reader) end
      self:feed(pkts, n, linktype)
      if C.pc_mono_ns() >= self.next_progress then
         C.pc_reader_stats_get(reader, stats)
         self:progress(stats)
      end
      if C.pc_signal_pending() ~= 0 then break end
   end
   C.pc_reader_stats_get(reader, stats)
   self.stats = stats
   self:finish()
   return C.pc_signal_pending(), rerr
end

return M
