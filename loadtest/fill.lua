-- wrk script: PUT k0 .. k(KV_KEYS-1) once each, in order, then stop sending (use with -t1).
-- Debian's wrk still waits for -d after thread:stop(): loadtest/lib.sh kv_fill stops it by PID.
--   KV_KEYS=1000000 KV_VALUE_SIZE=100 wrk -t1 -c64 -d600s -s loadtest/fill.lua http://127.0.0.1:8080
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local kv = require("kvcommon")

local sent, done = 0, 0
request = function()
  local key = sent % kv.keys
  sent = sent + 1
  return wrk.format("PUT", kv.path .. "?id=k" .. key .. kv.query, kv.put_headers, kv.value)
end
response = function(status)
  done = done + 1
  if done >= kv.keys then wrk.thread:stop() end
end
