// Closed loop for benchmarks/bench_load.py: `connections` clients, each sending its next
// request as soon as the last is answered, cycling through `requests` ([path, token]).
// Prints one JSON line. The CA comes from NODE_EXTRA_CA_CERTS.
import autocannon from "autocannon";

const config = JSON.parse(process.argv[2]);
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
console.log(JSON.stringify({
  requests: result.requests.total,
  seconds: result.duration,
  rps: result.requests.total / result.duration,
  p50_ms: result.latency.p50,
  p99_ms: result.latency.p99,
  errors: result.errors + result.timeouts + result.non2xx,
}));
