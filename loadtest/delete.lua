-- wrk / wrk2 script: DELETE /v0/entity?id=k<random> (see kvcommon.lua for the environment).
--   KV_KEYS=100000 KV_VALUE_SIZE=100 wrk -t2 -c10 -d10s -s loadtest/delete.lua http://127.0.0.1:8080
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local kv = require("kvcommon")

setup = kv.setup
init = function(args) kv.init() end
request = kv.delete
