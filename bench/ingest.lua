-- wrk script of `make bench`: authenticated diary writes, PUT /v1/diary/{date}/{meal}/{food_id}
-- with {"amount": N}, round-robin over many users. The same requests go to the two HTTP
-- ceilings, so the three figures compare like with like.
--
-- Environment:
--   BENCH_USERS    file of "token food_id" lines (one per user), required
--   BENCH_WRK_OUT  file that receives the summary as one JSON object (appended), optional
--
-- Each wrk thread has its own Lua state; `setup` numbers them so that threads start at
-- different users and dates.

local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local users = {}
local dates = {}
local meals = { "breakfast", "lunch", "dinner", "snack" }
local i = 0

function init(args)
  local path = os.getenv("BENCH_USERS")
  for line in io.lines(path) do
    local token, food = line:match("^(%S+)%s+(%S+)")
    if token then
      users[#users + 1] = { "Bearer " .. token, food }
    end
  end
  if #users == 0 then
    error("no users in " .. tostring(path))
  end
  -- 2000 distinct days from 2020-01-01 (UTC): the writes spread over many rows.
  local base = os.time({ year = 2020, month = 1, day = 1, hour = 12 })
  for d = 0, 1999 do
    dates[d + 1] = os.date("!%Y-%m-%d", base + d * 86400)
  end
  i = (tid or 0) * 1000003
end

function request()
  i = i + 1
  local n = #users
  local u = users[(i % n) + 1]
  local k = math.floor(i / n)
  local date = dates[(math.floor(k / 4) % #dates) + 1]
  local meal = meals[(k % 4) + 1]
  local body = string.format('{"amount": %d.5}', 50 + (i % 400))
  return wrk.format("PUT", "/v1/diary/" .. date .. "/" .. meal .. "/" .. u[2], {
    ["Authorization"] = u[1],
    ["Content-Type"] = "application/json",
  }, body)
end

function done(summary, latency, requests)
  local out = os.getenv("BENCH_WRK_OUT")
  if not out then
    return
  end
  local e = summary.errors
  local f = assert(io.open(out, "a"))
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,' ..
    '"p99_9":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
  f:close()
end
