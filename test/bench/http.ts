/**
 * HTTP/1.1 throughput: hyp (1 worker, through the router) vs raw node:http
 * vs Fastify, hello world and a JSON route.
 *
 * Method, chosen for a small shared machine whose speed drifts by ±20 %
 * from one second to the next:
 *   - each server in its own process, all started up front; servers pinned
 *     to one core and the load generator to another (procs.ts `pinning`);
 *   - one load generator for all: wrk when installed (C, so the server and
 *     not the generator is the bottleneck), else autocannon in this process;
 *   - many short alternating rounds; every round measures all three servers
 *     back to back, and the ratios are taken within the round, then the
 *     median over rounds — slow drift cancels out of each ratio;
 *   - server CPU time per request from /proc/<pid>/stat beside req/s.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { median } from './load.js';
import { dist, hypStatus, pinning, startHyp, startProc } from './procs.js';

const durationS = Number(process.env.BENCH_DURATION ?? 2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 9);
const connections = 50;
const clockTicks = 100; // USER_HZ on Linux
const run = promisify(execFile);

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

interface Server {
  name: string;
  port: number;
  /** The process that serves (hyp: its one worker). */
  pid: number;
  stop: () => Promise<void>;
}

async function startServers(): Promise<Server[]> {
  const script = (name: string) => join(dist, 'test', 'bench', 'servers', name);
  const raw = startProc([script('hello-node.js')], {}, true);
  const fastify = startProc([script('hello-fastify.js')], {}, true);
  const hyp = await startHyp(script('hello-hyp.js'), ['supervisor.workers=1'], true);
  const worker = (await hypStatus(hyp.adminPort)) as unknown as { workers: Array<{ pid: number }> };
  return [
    {
      name: 'node:http (raw)',
      port: Number((await raw.waitLine(/^listening (\d+)/))[1]),
      pid: raw.child.pid!,
      stop: raw.stop,
    },
    { name: 'hyp (1 worker, router)', port: hyp.httpPort, pid: worker.workers[0]!.pid, stop: hyp.stop },
    {
      name: 'fastify',
      port: Number((await fastify.waitLine(/^listening (\d+)/))[1]),
      pid: fastify.child.pid!,
      stop: fastify.stop,
    },
  ];
}

/** The load generator: requests completed in `seconds` against `url`; throws on any error or non-2xx. */
type Generator = { name: string; load: (url: string, seconds: number) => Promise<number> };

const wrkGenerator: Generator = {
  name: `wrk (1 thread, ${connections} connections)`,
  async load(url, seconds) {
    const args = ['-t1', `-c${connections}`, `-d${seconds}s`, url];
    const { stdout } = pinning
      ? await run('taskset', ['-c', pinning.loader, 'wrk', ...args])
      : await run('wrk', args);
    const errors = stdout.match(/Socket errors:.*|Non-2xx or 3xx responses: \d+/);
    if (errors) throw new Error(`${url}: ${errors[0]}`);
    const done = stdout.match(/(\d+) requests in/);
    if (!done) throw new Error(`${url}: unreadable wrk output\n${stdout}`);
    return Number(done[1]);
  },
};

const autocannonGenerator: Generator = {
  name: `autocannon (${connections} connections, in the bench process)`,
  async load(url, seconds) {
    const r = await autocannon({ url, connections, duration: seconds });
    if (r.non2xx || r.errors) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    return r.requests.total;
  },
};

function pickGenerator(): Generator {
  if (process.env.BENCH_LOADGEN === 'autocannon') return autocannonGenerator;
  return spawnSync('wrk', ['--version']).error ? autocannonGenerator : wrkGenerator;
}

interface Sample {
  rps: number;
  cpuUsPerRequest: number;
}

async function measure(gen: Generator, server: Server, path: string, seconds: number): Promise<Sample> {
  const cpu0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  const requests = await gen.load(`http://127.0.0.1:${server.port}${path}`, seconds);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(server.pid);
  return { rps: requests / elapsed, cpuUsPerRequest: ((cpu1 - cpu0) * 1e6) / Math.max(1, requests) };
}

export async function runHttpBench(): Promise<string[]> {
  const gen = pickGenerator();
  const servers = await startServers();
  const [raw, hyp, fastify] = servers as [Server, Server, Server];
  const routes = { hello: '/', json: '/json' } as const;
  const samples = new Map<string, Sample[]>();
  const key = (route: string, s: Server) => `${route} ${s.name}`;
  try {
    for (const s of servers) for (const path of Object.values(routes)) await measure(gen, s, path, 1);
    for (let round = 0; round < rounds; round++) {
      for (const [route, path] of Object.entries(routes)) {
        // Rotate the order so no server always runs first (or right after another).
        for (let i = 0; i < servers.length; i++) {
          const s = servers[(i + round) % servers.length]!;
          const k = key(route, s);
          samples.set(k, [...(samples.get(k) ?? []), await measure(gen, s, path, durationS)]);
        }
      }
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
  const out = [
    `HTTP/1.1, ${gen.name}; ${rounds} rounds x ${durationS}s per server and route, order rotated each round; ` +
      (pinning
        ? `servers pinned to core ${pinning.server}, load generator to core ${pinning.loader}`
        : 'no CPU pinning'),
    '  ratios: median over rounds of the ratio within a round; CPU per request of the serving process from /proc',
  ];
  const ratio = (route: string, a: Server, b: Server, f: (x: Sample) => number) => {
    const as = samples.get(key(route, a))!;
    const bs = samples.get(key(route, b))!;
    return median(as.map((x, i) => f(x) / f(bs[i]!)));
  };
  for (const route of Object.keys(routes)) {
    for (const s of servers) {
      const xs = samples.get(key(route, s))!;
      const rps = median(xs.map((x) => x.rps));
      const cpu = median(xs.map((x) => x.cpuUsPerRequest));
      const vsRaw = ratio(route, s, raw, (x) => x.rps);
      const vsFastify = ratio(route, s, fastify, (x) => x.rps);
      out.push(
        `  ${route.padEnd(5)} ${s.name.padEnd(24)} ${Math.round(rps).toString().padStart(7)} req/s  ${vsRaw.toFixed(2)}x node:http  ${vsFastify.toFixed(2)}x fastify  | ${cpu.toFixed(1).padStart(5)} µs CPU/req`,
      );
    }
    const min = (xs: number[]) => Math.min(...xs).toFixed(2);
    const perRound = (a: Server, b: Server) =>
      samples.get(key(route, a))!.map((x, i) => x.rps / samples.get(key(route, b))![i]!.rps);
    out.push(
      `  ${route.padEnd(5)} hyp per round: vs node:http min ${min(perRound(hyp, raw))}, vs fastify min ${min(perRound(hyp, fastify))}  (targets: median >= 0.90x node:http, >= 1.00x fastify)`,
    );
  }
  return out;
}
