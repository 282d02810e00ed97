// The official Node SDK as a measured client for `make bench` (run by bench/bench.lua).
//   node bench/node_client.js BASE_URL API_KEY WARMUP N
// client.actions.purchase.create({ amount: 10 }) is the SDK's method for POST /actions/purchase/esims
// (node_modules/telnyx/resources/actions/purchase.js). Retries off; Node's fetch keeps the
// connection alive. cpu_s is process.cpuUsage() (user+sys, all threads) over the N timed calls only.
'use strict';
const fs = require('fs');
const Telnyx = require('telnyx');

function statusKb(field) {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(field + ':\\s*(\\d+)'));
  return m ? Number(m[1]) : null;
}

async function main() {
  const [baseURL, apiKey, warmupArg, nArg] = process.argv.slice(2);
  const warmup = Number(warmupArg), n = Number(nArg);
  const client = new Telnyx({ apiKey, baseURL, maxRetries: 0 });
  const first = await client.actions.purchase.create({ amount: 10 });
  if (!first || !Array.isArray(first.data) || first.data.length !== 10) throw new Error('unexpected result from the stub');
  for (let i = 1; i < warmup; i++) await client.actions.purchase.create({ amount: 10 });
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await client.actions.purchase.create({ amount: 10 });
  const c = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - w0) / 1e9;
  process.stdout.write(JSON.stringify({
    calls: n, cpu_s: (c.user + c.system) / 1e6, wall_s: wall,
    hwm_kb: statusKb('VmHWM'), rss_kb: statusKb('VmRSS'),
  }) + '\n');
}

main().catch((e) => { console.error('node_client:', e && e.stack || e); process.exit(1); });
