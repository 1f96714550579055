-- pushcap.paths: every path the appliance hard-codes, in one place.
--
-- On an FMADIO box these live under / (/opt/fmadio, /mnt/store0).  Setting
-- PUSHCAP_ROOT (or calling set_root, which scripts do for --root) moves all
-- of them under another directory, so tests and new users run everything
-- from a checkout without root and without touching /opt or /mnt.
local M = {}

local layout = {
   fmadio = "/opt/fmadio",
   etc = "/opt/fmadio/etc",             -- push_pcap.lua, rclone.conf, time.lua
   etc_ro = "/opt/fmadio/etc_ro",       -- shipped templates
   analytics = "/opt/fmadio/analytics",
   bin = "/opt/fmadio/bin",
   queue = "/opt/fmadio/queue",         -- lxc_ring files
   store = "/mnt/store0",               -- the store volume
   capture = "/mnt/store0/capture",     -- the capture ring (ring.dat, captures/)
   log = "/mnt/store0/log",
   spool = "/mnt/store0/spool",         -- raw copies of splits whose delivery failed
}

local root

local function join(a, b)
   if a == "" or a == "/" then return b end
   return (a:gsub("/+$", "")) .. b
end

function M.set_root(dir)
   root = dir or ""
   for k, v in pairs(layout) do M[k] = join(root, v) end
   M.rclone_conf = M.etc .. "/rclone.conf"
   M.root = root
end

function M.get_root() return root end

M.set_root(os.getenv("PUSHCAP_ROOT") or "")

return M
