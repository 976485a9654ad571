/**
 * `npm run bench`: every benchmark, each beside a baseline measured in the
 * same run. A benchmark module that is not built yet is reported, not fatal.
 */
type Bench = { name: string; module: string; fn: string };

const benches: Bench[] = [
  { name: 'rolling restarts (hyp vs node:cluster)', module: './restart.js', fn: 'runRestartBench' },
  { name: 'HTTP/1.1 throughput', module: './http.js', fn: 'runHttpBench' },
  { name: 'h2c throughput', module: './http2.js', fn: 'runHttp2Bench' },
  { name: 'WebSocket fan-out and memory', module: './ws.js', fn: 'runWsBench' },
  { name: 'TCP echo', module: './tcp.js', fn: 'runTcpBench' },
];

const only = process.argv.slice(2);
let failed = false;
for (const bench of benches) {
  if (only.length && !only.some((o) => bench.module.includes(o))) continue;
  process.stdout.write(`\n== ${bench.name}\n`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(bench.module)) as Record<string, unknown>;
  } catch (err) {
    process.stdout.write(`  (not available: ${(err as Error).message.split('\n')[0]})\n`);
    continue;
  }
  const run = mod[bench.fn] as () => Promise<string[]>;
  try {
    for (const line of await run()) process.stdout.write(`${line}\n`);
  } catch (err) {
    failed = true;
    process.stdout.write(`  FAILED: ${(err as Error).stack ?? err}\n`);
  }
}
process.exit(failed ? 1 : 0);
