-- pushcap.splitlog: pcap_split's log lines, in FMADIO's format so that
-- existing log parsers keep working (fmadio-behaviour.md section 3.7).
local C = require("pushcap.ffi")
local num = require("pushcap.num")

local M = {}
local Log = {}
Log.__index = Log

function M.new(out)
   return setmetatable({ out = out }, Log)
end

function Log:line(s)
   self.out(s .. "\n")
end

function Log:info(s) self:line(s) end

function Log:err(s)
   io.stderr:write("ERROR: ", s, "\n")
   io.stderr:flush()
end

local function hours(e) return (tonumber(C.pc_mono_ns() - e.t0) / 3.6e12) end

local function date(ts)
   local sec = num.split(ts)
   return os.date("%Y-%m-%d %H:%M:%S", sec)
end

local function speed(e, input_bytes)
   local dt = tonumber(C.pc_mono_ns() - e.t0) / 1e9
   if dt <= 0 then return 0 end
   return input_bytes * 8 / dt / 1e9
end

function Log:cmd(s) self:line("[" .. s .. "]") end
function Log:cmd_done(s) self:line("Cmd [" .. s .. "]") end

function Log:script(cmd, rc)
   self:line("Script [" .. cmd .. "]")
   if rc ~= 0 then self:err(("script [%s] exited %d"):format(cmd, rc)) end
end

function Log:new_split(e, cur, first_ts)
   local bytes = e.stats_bytes or 0
   self:line(("[%.3f H][%s] %s : Total Bytes %.3f GB Speed: %.3f Gbps : New Split")
      :format(hours(e), date(first_ts), cur.name, bytes / 1e9, speed(e, bytes)))
end

function Log:finished(e, cur, snap, trigger_ts, wall, span, final)
   self:line(("[%.3f H][%s] %s : Finished : Split Bytes %16s (%.3f GB) Split Pkts:%10s WallTime:%20s PCAPTime:%20s%s")
      :format(hours(e), date(trigger_ts), cur.name, num.str(snap.bytes), tonumber(snap.bytes) / 1e9,
         num.str(snap.pkts), num.str(wall), num.str(span), final and " close" or ""))
end

function Log:progress(e, stats, now)
   local bytes = tonumber(stats.bytes_read)
   local pkts = tonumber(stats.packets)
   local dt = tonumber(now - (e.last_progress or e.t0)) / 1e9
   local dbytes = bytes - (e.last_bytes or 0)
   local dpkts = pkts - (e.last_pkts or 0)
   e.last_progress, e.last_bytes, e.last_pkts, e.stats_bytes = now, bytes, pkts, bytes
   self:line(("[%.3f H][%s] %s : Total Bytes %20s %10s %.3f GB Speed: %.3f Gbps %.3f Mpps : TotalSplit %d PCAPTS: %s")
      :format(hours(e), date(e.last_ts), e.cur and e.cur.name or "-", num.str(bytes), num.str(pkts),
         bytes / 1e9, dt > 0 and dbytes * 8 / dt / 1e9 or 0, dt > 0 and dpkts / dt / 1e6 or 0,
         e.splits, num.str(e.last_ts)))
end

return M
