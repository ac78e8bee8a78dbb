-- wrk script: posts the signed Twilio voice webhooks written by the bench
-- server (one "path<TAB>signature<TAB>body" per line; file in
-- WEBHOOK_REQUESTS), cycling through them, and prints one machine-readable
-- RESULT line at the end.
local reqs = {}
local idx = 0

function init(args)
  local path = os.getenv("WEBHOOK_REQUESTS")
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    local p, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if p then
      reqs[#reqs + 1] = wrk.format("POST", p, {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = sig,
      }, body)
    end
  end
  f:close()
  assert(#reqs > 0, "no requests in " .. path)
  idx = math.random(#reqs)
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.0f p50_us=%d p99_us=%d max_us=%d socket_errors=%d non2xx=%d\n",
    summary.requests, summary.duration, summary.requests / summary.duration * 1e6,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
