-- wrk / wrk2 script: GET with probability KV_GET_RATIO (default 0.9), PUT otherwise
-- (see kvcommon.lua for the environment).
--   KV_GET_RATIO=0.5 wrk -t2 -c10 -d10s -s loadtest/mixed.lua http://127.0.0.1:8080
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local kv = require("kvcommon")

setup = kv.setup
init = function(args) kv.init() end
request = function()
  if math.random() < kv.get_ratio then return kv.get() end
  return kv.put()
end
