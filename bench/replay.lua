-- wrk script for the benchmark (bench/load.py runs it):
--   wrk -t1 -cN -dS -s bench/replay.lua http://127.0.0.1:PORT/graphql -- FILE [COUNT]
-- FILE has one request per line, "<bearer token>\t<k|c>\t<JSON body>", replayed in
-- turn; "c" adds "Connection: close" (the server closes, wrk reconnects).
-- With COUNT (one thread), stops after that many answers: a fixed set of requests.
-- Counts non-200 answers and GraphQL "errors" and prints one JSON line in done().

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  reqs = {}
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    if tab then
      local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. line:sub(1, tab - 1),
      }
      if line:sub(tab + 1, tab + 1) == "c" then
        headers["Connection"] = "close"
      end
      -- wrk.path: the URL's path from the command line (/graphql, /same-sql/graphql).
      -- It was "/graphql" here, so wrk sent the same-SQL reference's load to the
      -- honest reference's route.
      reqs[#reqs + 1] = wrk.format("POST", wrk.path, headers, line:sub(tab + 3))
    end
  end
  n = #reqs
  i = (id * 7919) % n
  limit = tonumber(args[2] or "0") or 0
  answered = 0
  bad = 0
  gql_errors = 0
end

function request()
  i = i % n + 1
  return reqs[i]
end

function response(status, headers, body)
  answered = answered + 1
  if limit > 0 and answered == limit then
    -- wrk's main thread sleeps for the whole -d: bench/load.py reads this line and
    -- interrupts wrk, which then prints its summary.
    io.write("WRKDONE\n")
    io.flush()
    wrk.thread:stop()
  end
  if status ~= 200 then
    bad = bad + 1
  elseif body:find('"errors"', 1, true) or body:find('"userErrors":[{', 1, true) then
    gql_errors = gql_errors + 1
  end
end

function done(summary, latency, requests)
  local bad_total, gql_total = 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    gql_total = gql_total + t:get("gql_errors")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"status_errors":%d,"graphql_errors":%d,' ..
    '"socket_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, bad_total, gql_total,
    e.connect + e.read + e.write, e.timeout))
end
