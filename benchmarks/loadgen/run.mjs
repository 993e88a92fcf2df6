// Closed loop for benchmarks/bench_load.py: `connections` clients, each sending its next
// request as soon as the last is answered, cycling through `requests` ([path, token]).
// Prints one JSON line. The CA comes from NODE_EXTRA_CA_CERTS.
import autocannon from "autocannon";

const config = JSON.parse(process.argv[2]);
const started = performance.now();
const result = await autocannon({
  url: config.url,
  connections: config.connections,
  amount: config.amount,
  pipelining: 1,
  timeout: 30,
  requests: config.requests.map(([path, token]) => ({
    method: "GET",
    path,
    headers: { authorization: `Bearer ${token}`, "accept-encoding": "gzip" },
  })),
});
// timed here, around the whole run, as the Python loops are timed
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({
  requests: result.requests.total,
  seconds,
  rps: result.requests.total / seconds,
  p50_ms: result.latency.p50,
  p99_ms: result.latency.p99,
  errors: result.errors + result.timeouts + result.non2xx,
}));
