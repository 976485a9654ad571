/**
 * Requests lost during 5 rolling restarts: hyp's supervisor vs Node's cluster
 * module doing fork-new / disconnect-old. Same app routes, same load
 * (32 keep-alive connections from one undici pool in this process), 2 workers each.
 */
import { join } from 'node:path';
import { type LoadResult, LoadRun, percentile } from './load.js';
import { dist, hypStatus, startHyp, startProc } from './procs.js';

const restarts = 5;
const connections = 32;

function line(name: string, r: LoadResult): string {
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  const errs =
    Object.entries(r.errors)
      .map(([k, v]) => `${k}:${v}`)
      .join(',') || '-';
  return `  ${name.padEnd(22)} requests=${String(r.sent).padEnd(7)} failed=${String(r.failed).padEnd(5)} (${((100 * r.failed) / Math.max(1, r.sent)).toFixed(2)}%) p50=${percentile(sorted, 50).toFixed(2)}ms p99=${percentile(sorted, 99).toFixed(2)}ms errors=${errs}`;
}

async function measure(url: string, restartOnce: (i: number) => Promise<void>): Promise<LoadResult> {
  const load = new LoadRun({ url, connections, requests: 10_000_000, maxMs: 120_000 });
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 1; i <= restarts; i++) {
    await restartOnce(i);
    await new Promise((r) => setTimeout(r, 300));
  }
  load.stop();
  return load.done;
}

export async function runRestartBench(): Promise<string[]> {
  const hyp = await startHyp(join(dist, 'apps', 'demo', 'app.js'), ['supervisor.workers=2']);
  let hypResult: LoadResult;
  try {
    hypResult = await measure(`http://127.0.0.1:${hyp.httpPort}`, async (i) => {
      const r = await fetch(`http://127.0.0.1:${hyp.adminPort}/restart?wait=1`, { method: 'POST' });
      if (r.status !== 200) throw new Error(`restart ${i} failed: ${r.status}`);
      for (;;) {
        if ((await hypStatus(hyp.adminPort)).other_workers.length === 0) break;
        await new Promise((res) => setTimeout(res, 50));
      }
    });
  } finally {
    await hyp.stop();
  }

  const cluster = startProc([join(dist, 'test', 'bench', 'servers', 'cluster-rolling.js')], {
    BENCH_WORKERS: '2',
  });
  let clusterResult: LoadResult;
  try {
    const port = Number((await cluster.waitLine(/^listening (\d+)/))[1]);
    clusterResult = await measure(`http://127.0.0.1:${port}`, async (i) => {
      cluster.child.kill('SIGUSR2');
      await cluster.waitLine(new RegExp(`^restarted ${i}$`));
    });
  } finally {
    await cluster.stop();
  }
  return [
    `rolling restarts under load: ${restarts} restarts, 2 workers, ${connections} keep-alive connections, GET /api/ping (load generator and servers share the machine's 2 cores)`,
    line('hyp supervisor', hypResult),
    line('node:cluster baseline', clusterResult),
  ];
}
