-- wrk script: POST one MCP `tools/call` per request over keep-alive connections.
-- Environment: BENCH_BODY_FILE (the JSON-RPC body), BENCH_TOKEN (bearer token).
-- done() prints one machine-readable line starting with `BENCH ` for bench/run.sh:
-- requests, rps, p50/p99 (microseconds), non-2xx responses, JSON results with
-- "isError": true, and socket errors (connect/read/write/timeout).

local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  iserror = 0
  rpcerror = 0
end

-- Only plain (memchr-speed) searches over the whole body: Lua patterns over a 300 KB result
-- cost wrk more CPU than the server spends producing it. The server writes compact JSON; the
-- pattern fallbacks look only at the head (error objects) and the tail (isError comes last).
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif body then
    if string.find(body, '"isError":true', 1, true) or
       string.find(string.sub(body, -256), '"isError"%s*:%s*true') then
      iserror = iserror + 1
    elseif string.find(string.sub(body, 1, 256), '"error"%s*:%s*{') and
           not string.find(string.sub(body, 1, 256), '"result"', 1, true) then
      rpcerror = rpcerror + 1
    end
  end
end

function done(summary, latency, requests)
  local n2, ie, re = 0, 0, 0
  for _, t in ipairs(threads) do
    n2 = n2 + t:get("non2xx")
    ie = ie + t:get("iserror")
    re = re + t:get("rpcerror")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d iserror=%d rpcerror=%d sockerr=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    n2, ie, re, e.connect + e.read + e.write + e.timeout))
end
