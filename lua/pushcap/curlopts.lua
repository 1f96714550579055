-- pushcap.curlopts: the curl arguments of a CURL target (pcap_split --curl
-- "<args>" <url>, a push target's CurlArgs) as the "name=value" option
-- lines runtime/curl_put.c maps to libcurl options (docs/targets.md).
-- Arguments it does not know make parse fail: the sink then falls back to
-- running the curl command.
-- splitopts requires pushcap.sink, which requires this: load it on use
local function words(s) return require("pushcap.splitopts").words(s) end

local M = {}

-- argument -> option name, and whether it takes a value
local ARGS = {
   ["-u"] = { "user", true }, ["--user"] = { "user", true },
   ["--ftp-create-dirs"] = { "ftp_create_dirs" },
   ["-k"] = { "insecure" }, ["--insecure"] = { "insecure" },
   ["--connect-timeout"] = { "connect_timeout", true },
   ["-m"] = { "max_time", true }, ["--max-time"] = { "max_time", true },
   ["-Y"] = { "low_speed_limit", true }, ["--speed-limit"] = { "low_speed_limit", true },
   ["-y"] = { "low_speed_time", true }, ["--speed-time"] = { "low_speed_time", true },
   ["--ssl"] = { "use_ssl", false, "try" }, ["--ftp-ssl"] = { "use_ssl", false, "try" },
   ["--ssl-reqd"] = { "use_ssl", false, "all" }, ["--ftp-ssl-reqd"] = { "use_ssl", false, "all" },
   ["--ftp-pasv"] = { "ftp_pasv" },
   ["-P"] = { "ftp_port", true }, ["--ftp-port"] = { "ftp_port", true },
   ["--limit-rate"] = { "limit_rate", true },
   ["-4"] = { "ipv4" }, ["--ipv4"] = { "ipv4" },
   ["-6"] = { "ipv6" }, ["--ipv6"] = { "ipv6" },
   ["--key"] = { "ssh_key", true }, ["--pubkey"] = { "ssh_pubkey", true },
   ["--pass"] = { "key_passwd", true },
   ["--cacert"] = { "cacert", true }, ["--capath"] = { "capath", true },
   ["--cert"] = { "cert", true },
}
-- accepted and ignored: output and progress flags of the curl command
local IGNORED = { ["-s"] = true, ["--silent"] = true, ["-S"] = true, ["--show-error"] = true,
                  ["-sS"] = true, ["-Ss"] = true, ["-f"] = true, ["--fail"] = true }

-- Returns the option lines (a string, "" for none), or nil and a message
-- naming the argument that cannot be mapped.
function M.parse(args)
   local w, err = words(args or "")
   if not w then return nil, err end
   local lines, i = {}, 1
   while i <= #w do
      local a = w[i]
      local spec = ARGS[a]
      if IGNORED[a] then
         i = i + 1
      elseif spec then
         local v = spec[3] or "1"
         if spec[2] then
            v = w[i + 1]
            if v == nil then return nil, a .. " needs a value" end
            if v:find("\n") then return nil, a .. ": a value cannot hold a newline" end
            i = i + 2
         else
            i = i + 1
         end
         lines[#lines + 1] = spec[1] .. "=" .. v
      else
         return nil, "curl argument '" .. a .. "' has no libcurl mapping"
      end
   end
   return table.concat(lines, "\n")
end

-- Arguments whose value is a secret.
local SECRET = { ["-u"] = true, ["--user"] = true, ["--pass"] = true }

-- The arguments with the -u/--user and --pass values masked, for logs.
function M.mask(args)
   args = args or ""
   local w = words(args)
   if not w then
      -- cannot split it: hide everything after a -u or --pass
      return (args:gsub("(%-%-?u[ser]*)%s+.*$", "%1 ***"):gsub("(%-%-pass)%s+.*$", "%1 ***"))
   end
   local out, i = {}, 1
   while i <= #w do
      local a = w[i]
      if SECRET[a] and w[i + 1] then
         out[#out + 1] = a .. " ***"
         i = i + 2
      else
         out[#out + 1] = a:find("[%s'\"]") and ("'" .. a:gsub("'", "'\\''") .. "'") or a
         i = i + 1
      end
   end
   return table.concat(out, " ")
end

return M
