/**
 * HTTP/1.1 throughput: hyp (1 worker, through the router) vs raw node:http
 * vs Fastify. Same load generator (autocannon, in this process), each server
 * in its own process, same run. Printed as ratios against raw node:http.
 */
import { join } from 'node:path';
import autocannon from 'autocannon';
import { dist, startHyp, startProc } from './procs.js';

const durationS = Number(process.env.BENCH_DURATION ?? 5);
const connections = 50;

async function rps(url: string): Promise<number> {
  // warm-up, then the measured run
  await autocannon({ url, connections, duration: 1 });
  const r = await autocannon({ url, connections, duration: durationS });
  if (r.non2xx || r.errors) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return r.requests.average;
}

export async function runHttpBench(): Promise<string[]> {
  const servers: Array<{ name: string; start: () => Promise<{ port: number; stop: () => Promise<void> }> }> =
    [
      {
        name: 'node:http (raw)',
        start: async () => {
          const p = startProc([join(dist, 'test', 'bench', 'servers', 'hello-node.js')]);
          return { port: Number((await p.waitLine(/^listening (\d+)/))[1]), stop: p.stop };
        },
      },
      {
        name: 'hyp (1 worker, router)',
        start: async () => {
          const h = await startHyp(join(dist, 'test', 'bench', 'servers', 'hello-hyp.js'), [
            'supervisor.workers=1',
          ]);
          return { port: h.httpPort, stop: h.stop };
        },
      },
      {
        name: 'fastify',
        start: async () => {
          const p = startProc([join(dist, 'test', 'bench', 'servers', 'hello-fastify.js')]);
          return { port: Number((await p.waitLine(/^listening (\d+)/))[1]), stop: p.stop };
        },
      },
    ];
  const results: Record<string, Record<string, number>> = {};
  for (const s of servers) {
    const running = await s.start();
    try {
      results[s.name] = {
        hello: await rps(`http://127.0.0.1:${running.port}/`),
        json: await rps(`http://127.0.0.1:${running.port}/json`),
      };
    } finally {
      await running.stop();
    }
  }
  const base = results['node:http (raw)']!;
  const fastify = results.fastify!;
  const out = [
    `HTTP/1.1 req/s, autocannon ${connections} connections x ${durationS}s, server and load generator share 2 cores`,
  ];
  for (const route of ['hello', 'json'] as const) {
    for (const [name, r] of Object.entries(results)) {
      out.push(
        `  ${route.padEnd(5)} ${name.padEnd(24)} ${Math.round(r[route]!).toString().padStart(7)} req/s  ${(r[route]! / base[route]!).toFixed(2)}x node:http  ${(r[route]! / fastify[route]!).toFixed(2)}x fastify`,
      );
    }
  }
  return out;
}
