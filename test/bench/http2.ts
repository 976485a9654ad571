/**
 * h2c throughput: hyp (1 worker, through the router, HTTP/1.1 + h2c on one
 * port) vs raw node:http2, each in its own process, driven by the same load
 * generator in the same run: node's http2 client in this process, a few
 * sessions with many concurrent streams each, bounded by time and count.
 */
import { type ClientHttp2Session, connect } from 'node:http2';
import { join } from 'node:path';
import { median } from './load.js';
import { dist, startHyp, startProc } from './procs.js';

const durationS = Number(process.env.BENCH_DURATION ?? 5);
const sessions = 4;
const streamsPerSession = 25;
const maxRequests = 2_000_000;
const rounds = 3;

function open(port: number): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = connect(`http://127.0.0.1:${port}`);
    s.once('remoteSettings', () => resolve(s));
    s.once('error', reject);
  });
}

function one(session: ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path });
    let status = 0;
    stream.on('response', (h) => {
      status = Number(h[':status']);
    });
    stream.on('data', () => {});
    stream.on('error', reject);
    // 'close' also covers a stream reset without an error: never wait forever.
    stream.on('close', () =>
      stream.rstCode ? reject(new Error(`stream reset ${stream.rstCode}`)) : resolve(status),
    );
    stream.end();
  });
}

interface Run {
  ok: number;
  failed: number;
  seconds: number;
}

async function load(port: number, path: string, seconds: number): Promise<Run> {
  const open_ = await Promise.all(Array.from({ length: sessions }, () => open(port)));
  const run: Run = { ok: 0, failed: 0, seconds: 0 };
  const start = performance.now();
  const end = start + seconds * 1000;
  const lane = async (session: ClientHttp2Session) => {
    while (performance.now() < end && run.ok + run.failed < maxRequests) {
      try {
        if ((await one(session, path)) === 200) run.ok++;
        else run.failed++;
      } catch {
        run.failed++;
      }
    }
  };
  await Promise.all(open_.flatMap((s) => Array.from({ length: streamsPerSession }, () => lane(s))));
  run.seconds = (performance.now() - start) / 1000;
  for (const s of open_) s.close();
  return run;
}

async function rps(port: number, path: string): Promise<number> {
  const r = await load(port, path, durationS);
  if (r.failed) throw new Error(`h2c ${path}: ${r.failed} failed requests`);
  return r.ok / r.seconds;
}

export async function runHttp2Bench(): Promise<string[]> {
  const servers: Array<{ name: string; start: () => Promise<{ port: number; stop: () => Promise<void> }> }> =
    [
      {
        name: 'node:http2 (raw)',
        start: async () => {
          const p = startProc([join(dist, 'test', 'bench', 'servers', 'hello-node-h2.js')]);
          return { port: Number((await p.waitLine(/^listening (\d+)/))[1]), stop: p.stop };
        },
      },
      {
        name: 'hyp (1 worker, router)',
        start: async () => {
          // log.level stays info: startHyp reads the admin port from an info line.
          const h = await startHyp(join(dist, 'test', 'bench', 'servers', 'hello-hyp.js'), [
            'supervisor.workers=1',
            'server.protocol=auto',
          ]);
          return { port: h.httpPort, stop: h.stop };
        },
      },
    ];
  const results: Record<string, Record<'hello' | 'json', number>> = {};
  // Both servers run for the whole bench (an idle one costs nothing) and the
  // measured rounds alternate between them, so drift in the machine's load
  // (2 shared cores) hits both alike; each figure is the median of its rounds.
  const running = [];
  try {
    for (const srv of servers) running.push({ name: srv.name, ...(await srv.start()) });
    for (const r of running) await load(r.port, '/', 1); // warm-up
    const samples: Record<string, Record<'hello' | 'json', number[]>> = {};
    for (const r of running) samples[r.name] = { hello: [], json: [] };
    for (let round = 0; round < rounds; round++) {
      for (const route of ['hello', 'json'] as const) {
        for (const r of running)
          samples[r.name]![route].push(await rps(r.port, route === 'hello' ? '/' : '/json'));
      }
    }
    for (const r of running)
      results[r.name] = { hello: median(samples[r.name]!.hello), json: median(samples[r.name]!.json) };
  } finally {
    await Promise.all(running.map((r) => r.stop()));
  }
  const base = results['node:http2 (raw)']!;
  const out = [
    `h2c req/s, node:http2 client ${sessions} sessions x ${streamsPerSession} concurrent streams, median of ${rounds} alternating ${durationS}s rounds, server and load generator share 2 cores`,
  ];
  for (const route of ['hello', 'json'] as const) {
    for (const [name, r] of Object.entries(results)) {
      out.push(
        `  ${route.padEnd(5)} ${name.padEnd(24)} ${Math.round(r[route]).toString().padStart(7)} req/s  ${(r[route] / base[route]).toFixed(2)}x node:http2`,
      );
    }
  }
  return out;
}
