-- Shared helpers of the wrk/wrk2 scripts (put.lua, get.lua, mixed.lua, delete.lua).
-- Environment:
--   KV_KEYS        key space: keys k0 .. k(N-1), uniformly chosen (default 100000)
--   KV_VALUE_SIZE  PUT body size in bytes (default 100)
--   KV_ACK, KV_FROM  replication parameters, appended as &ack=A&from=F when both are set
--   KV_GET_RATIO   mixed.lua: fraction of GETs, the rest PUTs (default 0.9)
--   KV_PATH        endpoint (default /v0/entity)
-- Keys and request text match kvload's, so results are comparable.
local M = {}

local function env_number(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if n == nil then error(name .. " must be a number, got '" .. v .. "'") end
  return n
end

M.keys = math.floor(env_number("KV_KEYS", 100000))
M.value_size = math.floor(env_number("KV_VALUE_SIZE", 100))
M.get_ratio = env_number("KV_GET_RATIO", 0.9)
M.path = os.getenv("KV_PATH") or "/v0/entity"

local ack, from = os.getenv("KV_ACK"), os.getenv("KV_FROM")
M.query = ""
if ack and ack ~= "" and from and from ~= "" then
  M.query = "&ack=" .. tonumber(ack) .. "&from=" .. tonumber(from)
end

local alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local parts = {}
for i = 1, M.value_size do
  local j = ((i * 7919) % #alphabet) + 1
  parts[i] = alphabet:sub(j, j)
end
M.value = table.concat(parts)
M.put_headers = { ["Content-Length"] = tostring(M.value_size) }

function M.url()
  return M.path .. "?id=k" .. math.random(0, M.keys - 1) .. M.query
end

function M.get() return wrk.format("GET", M.url()) end
function M.put() return wrk.format("PUT", M.url(), M.put_headers, M.value) end
function M.delete() return wrk.format("DELETE", M.url()) end

-- Gives each wrk thread its own random sequence (wrk runs one Lua state per thread).
local next_thread = 0
function M.setup(thread)
  next_thread = next_thread + 1
  thread:set("kv_thread", next_thread)
end

function M.init()
  local id = tonumber(wrk.thread and wrk.thread:get("kv_thread") or 0) or 0
  math.randomseed(os.time() * 1000 + id * 7919)
end

return M
