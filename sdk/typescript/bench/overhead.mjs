// SDK overhead on a buffered sandbox exec: `true` (command ["true"]) run N
// times (default 300; `node bench/overhead.mjs N`) through raw fetch and
// through the SDK, interleaved (the order alternates every round), against
// a `shroud serve` this script starts (see harness/server.js for the binary).
// Prints the median and mean per-call milliseconds of both and the
// difference.

import { performance } from 'node:perf_hooks';

import { Shroud } from '../src/index.js';
import { startServer } from '../harness/server.js';

const N = Number(process.argv[2] ?? process.env.BENCH_N ?? 300);
const WARMUP = Math.min(20, N);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

const server = await startServer();
try {
  const token = await server.token('bench', ['default:read', 'default:write']);
  const rt = new Shroud({ baseUrl: server.url, token });
  const sandbox = await rt.sandboxes.create({ template: 'bash' });
  const url = `${server.url}/api/sandboxes/${sandbox.id}/exec`;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' };

  async function raw() {
    const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ command: ['true'] }) });
    const body = await response.json();
    if (!response.ok || body.exit_code !== 0) throw new Error(`raw exec failed: ${response.status}`);
  }
  async function sdk() {
    const result = await sandbox.exec(['true']);
    if (result.exitCode !== 0) throw new Error('sdk exec failed');
  }
  async function timed(fn) {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  }

  for (let i = 0; i < WARMUP; i++) {
    await raw();
    await sdk();
  }
  const rawMs = [];
  const sdkMs = [];
  for (let i = 0; i < N; i++) {
    if (i % 2 === 0) {
      rawMs.push(await timed(raw));
      sdkMs.push(await timed(sdk));
    } else {
      sdkMs.push(await timed(sdk));
      rawMs.push(await timed(raw));
    }
  }
  await sandbox.delete();

  const f = (x) => x.toFixed(3).padStart(8);
  console.log(`buffered exec of ["true"], N=${N} each (interleaved, ${WARMUP} warm-up), node ${process.version}`);
  console.log(`            median     mean      p95`);
  console.log(`raw fetch ${f(median(rawMs))} ${f(mean(rawMs))} ${f(pct(rawMs, 95))}  ms/call`);
  console.log(`SDK       ${f(median(sdkMs))} ${f(mean(sdkMs))} ${f(pct(sdkMs, 95))}  ms/call`);
  const dm = median(sdkMs) - median(rawMs);
  const da = mean(sdkMs) - mean(rawMs);
  console.log(
    `overhead  ${f(dm)} ${f(da)}           ms/call (${((dm / median(rawMs)) * 100).toFixed(1)}% of the median, ${((da / mean(rawMs)) * 100).toFixed(1)}% of the mean)`,
  );
} finally {
  await server.stop();
}

// The SDK's own cost, without the network and the server's noise: the same
// calls against a fetch that answers a canned exec result at once.
{
  const canned = JSON.stringify({ exit_code: 0, stdout: '', stderr: '', duration_ms: 1, signal: null, timed_out: false, output_limit_reached: false, cancelled: false });
  const fakeFetch = async () => new Response(canned, { status: 200, headers: { 'content-type': 'application/json' } });
  const rt = new Shroud({ baseUrl: 'http://127.0.0.1:9', token: 'shr_bench', fetch: fakeFetch });
  const sandbox = rt.sandboxes.attach('00000000-0000-0000-0000-000000000000');
  const M = 20_000;
  const loop = async (fn) => {
    for (let i = 0; i < 2000; i++) await fn();
    const t = performance.now();
    for (let i = 0; i < M; i++) await fn();
    return ((performance.now() - t) / M) * 1000;
  };
  const rawUs = await loop(async () => {
    const r = await fakeFetch('http://127.0.0.1:9/api/sandboxes/x/exec', { method: 'POST', body: JSON.stringify({ command: ['true'] }) });
    await r.json();
  });
  const sdkUs = await loop(() => sandbox.exec(['true']));
  console.log(`client-side only (canned answers, ${M} calls): raw ${rawUs.toFixed(1)} µs/call, SDK ${sdkUs.toFixed(1)} µs/call, SDK cost ${(sdkUs - rawUs).toFixed(1)} µs/call`);
}
