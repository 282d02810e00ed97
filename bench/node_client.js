// The official Node SDK as a measured client for `make bench` (run by bench/bench.lua; prints one JSON line).
//
//   node bench/node_client.js purchase BASE_URL API_KEY ROUND MIN_ROUNDS MAX_ROUNDS N
//     client.actions.purchase.create({ amount: 10 }) one after another (POST /actions/purchase/esims,
//     node_modules/telnyx/resources/actions/purchase.js): warm-up rounds of ROUND calls until the
//     per-round CPU per call stops falling (at least MIN_ROUNDS, at most MAX_ROUNDS), then N timed calls.
//   node bench/node_client.js fanout BASE_URL API_KEY N MIN_ROUNDS MAX_ROUNDS TIMED
//     Promise.all over N client.simCards.getActivationCode(id) (GET /sim_cards/{id}/activation_code,
//     node_modules/telnyx/resources/sim-cards/sim-cards.js): warm-up fan-outs until the per-fan-out
//     wall time stops falling, then TIMED timed fan-outs.
//
// Retries off. The SDK calls Node's global fetch (undici), whose default dispatcher keeps connections
// alive and puts no cap on connections per origin (undici Agent `connections: null`), so Promise.all
// has all N requests in flight at once: bench.lua counts the connections nginx saw. Over https the
// certificate comes from NODE_EXTRA_CA_CERTS, and fetch speaks HTTP/1.1 (undici offers h2 only
// with allowH2, which the SDK does not set). cpu_s is process.cpuUsage() (user+sys, all threads)
// over the timed part only.
'use strict';
const fs = require('fs');
const Telnyx = require('telnyx');

function statusKb(field) {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(field + ':\\s*(\\d+)'));
  return m ? Number(m[1]) : null;
}

function cpuSeconds(c) { return (c.user + c.system) / 1e6; }

// Runs warm-up rounds (each returning its figure, lower is better) until the figure stops falling:
// two rounds in a row each no more than 3 % below the best before it, once at least minRounds ran
// (at most maxRounds). Returns the figures. The same rule as bench/client.lua and bench/limit.c.
async function warmUp(round, minRounds, maxRounds) {
  const figures = [];
  let best = Infinity, flat = 0;
  for (let k = 1; k <= maxRounds; k++) {
    const f = await round();
    figures.push(f);
    flat = f >= 0.97 * best ? flat + 1 : 0;
    best = Math.min(best, f);
    if (k >= minRounds && flat >= 2) break;
  }
  return figures;
}

async function purchase(client, args) {
  const [roundArg, minArg, maxArg, nArg] = args;
  const roundSize = Number(roundArg), n = Number(nArg);
  const first = await client.actions.purchase.create({ amount: 10 });
  if (!first || !Array.isArray(first.data) || first.data.length !== 10) throw new Error('unexpected result from the stub');
  const warmup = await warmUp(async () => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < roundSize; i++) await client.actions.purchase.create({ amount: 10 });
    return cpuSeconds(process.cpuUsage(c0)) / roundSize * 1e6;
  }, Number(minArg), Number(maxArg));
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await client.actions.purchase.create({ amount: 10 });
  const c = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - w0) / 1e9;
  return { calls: n, cpu_s: cpuSeconds(c), wall_s: wall, warmup_us: warmup, warmup_calls: 1 + warmup.length * roundSize };
}

async function fanout(client, args) {
  const [nArg, minArg, maxArg, timedArg] = args;
  const n = Number(nArg), timed = Number(timedArg);
  const ids = [];
  for (let i = 1; i <= n; i++) ids.push('6a09cdc3-8948-47f0-aa62-' + i.toString(16).padStart(12, '0'));
  const once = async () => {
    const c0 = process.cpuUsage();
    const w0 = process.hrtime.bigint();
    const res = await Promise.all(ids.map((id) => client.simCards.getActivationCode(id)));
    const wall = Number(process.hrtime.bigint() - w0) / 1e9;
    const cpu = cpuSeconds(process.cpuUsage(c0));
    if (res.length !== n || !res[n - 1].data || !res[n - 1].data.activation_code) throw new Error('unexpected result from the stub');
    return { wall, cpu };
  };
  const warm = [];
  const warmup = await warmUp(async () => { const r = await once(); warm.push(r); return r.wall; },
    Number(minArg), Number(maxArg));
  const walls = [], cpus = [];
  for (let k = 0; k < timed; k++) {
    const r = await once();
    walls.push(r.wall);
    cpus.push(r.cpu);
  }
  return { calls: n * timed, n, walls_s: walls, cpus_s: cpus, cpu_s: cpus.reduce((a, b) => a + b, 0),
    wall_s: walls.reduce((a, b) => a + b, 0), warmup_wall_s: warmup, warmup_calls: n * warmup.length };
}

async function main() {
  const [mode, baseURL, apiKey, ...rest] = process.argv.slice(2);
  const client = new Telnyx({ apiKey, baseURL, maxRetries: 0 });
  let r;
  if (mode === 'purchase') r = await purchase(client, rest);
  else if (mode === 'fanout') r = await fanout(client, rest);
  else throw new Error('usage: see the head of bench/node_client.js');
  r.hwm_kb = statusKb('VmHWM');
  r.rss_kb = statusKb('VmRSS');
  process.stdout.write(JSON.stringify(r) + '\n');
}

main().catch((e) => { console.error('node_client:', e && e.stack || e); process.exit(1); });
