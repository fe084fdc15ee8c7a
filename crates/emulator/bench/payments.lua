-- wrk script: POST /payments with a fresh correlationId on every request, so the
-- emulator stores each one (200) instead of refusing duplicates (422).
--   wrk -t1 -c50 -d10s --latency -s crates/emulator/bench/payments.lua http://127.0.0.1:8001
-- Each wrk thread numbers its own requests; the start time (seconds) and the thread
-- number go in the UUID's first groups, so ids collide neither across threads nor
-- across runs against the same emulator.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  counter = 0
  run = os.time() % 4294967296
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local id = string.format("%08x-%04x-4000-8000-%012d", run, tid, counter)
  local body = '{"correlationId":"' .. id .. '","amount":19.90,"requestedAt":"2025-07-10T12:34:56.789Z"}'
  return wrk.format(nil, "/payments", nil, body)
end

-- wrk itself reports "Non-2xx or 3xx responses": 422 would mean colliding ids, 429 a
-- full limiter.
