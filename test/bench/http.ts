/**
 * HTTP/1.1 throughput: hyp (1 worker, through the router) vs raw node:http
 * vs Fastify, hello world and a JSON route. The targets are against those
 * two; a fourth server, Fastify with hyp's per-request work added the way a
 * Fastify user would (request id in and out, a prom-client duration
 * histogram), is printed as a reference for what that work costs there.
 *
 * The machine this runs on is small (2 cores) and shared: its speed drifts
 * by ±20 % from one second to the next, which swamps a 5 % difference
 * between servers measured one after the other. So, by default:
 *   - each server in its own process, all pinned to the same core, and one
 *     load generator per server pinned to the other core (procs.ts `pinning`);
 *   - the generator is wrk (C, so the servers and not the generator are the
 *     bottleneck), one per server, all running AT THE SAME TIME: the servers
 *     split one core under the kernel's fair scheduler, so each one's req/s
 *     is inversely proportional to its CPU cost per request, and every
 *     server sees the same machine state at every instant;
 *   - many rounds; ratios are taken within a round, then the median;
 *   - the rounds are split over several sets of fresh processes (BENCH_SETS,
 *     default 3): two processes running the same code settle at steady
 *     states up to 6 % apart (V8's optimisation choices differ from one
 *     process to the next), which one set of processes would bake into
 *     every round.
 * BENCH_MODE=sequential measures the servers one after another instead (each
 * with the core to itself), in rounds whose order rotates; it is also what
 * runs when wrk is not installed (autocannon in this process generates load).
 * Server CPU time per request comes from /proc/<pid>/stat.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { median } from './load.js';
import { dist, hypStatus, pinning, startHyp, startProc } from './procs.js';

type Mode = 'concurrent' | 'sequential';
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
  const child = async (name: string, file: string): Promise<Server> => {
    const proc = startProc([script(file)], {}, true);
    const port = Number((await proc.waitLine(/^listening (\d+)/))[1]);
    return { name, port, pid: proc.child.pid!, stop: proc.stop };
  };
  const hyp = await startHyp(script('hello-hyp.js'), ['supervisor.workers=1'], true);
  const worker = (await hypStatus(hyp.adminPort)) as unknown as { workers: Array<{ pid: number }> };
  return [
    await child('node:http (raw)', 'hello-node.js'),
    { name: 'hyp (1 worker, router)', port: hyp.httpPort, pid: worker.workers[0]!.pid, stop: hyp.stop },
    await child('fastify', 'hello-fastify.js'),
    await child('fastify + id + histogram', 'hello-fastify-features.js'),
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

function pickMode(gen: Generator): Mode {
  // autocannon runs in this process: concurrent loads would share its one event loop.
  if (gen === autocannonGenerator || process.env.BENCH_MODE === 'sequential') return 'sequential';
  return 'concurrent';
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
  const mode = pickMode(gen);
  const durationS = Number(process.env.BENCH_DURATION ?? (mode === 'concurrent' ? 3 : 2));
  const rounds = Number(process.env.BENCH_ROUNDS ?? (mode === 'concurrent' ? 12 : 9));
  const sets = Math.max(1, Math.min(rounds, Number(process.env.BENCH_SETS ?? 3)));
  const routes = { hello: '/', json: '/json' } as const;
  const samples = new Map<string, Sample[]>();
  // By name: every set of fresh processes adds to the same series.
  const key = (route: string, s: Server) => `${route} ${s.name}`;
  const add = (route: string, s: Server, x: Sample) =>
    samples.set(key(route, s), [...(samples.get(key(route, s)) ?? []), x]);
  let servers: Server[] = [];
  for (let set = 0; set < sets; set++) {
    servers = await startServers();
    try {
      for (const s of servers) for (const path of Object.values(routes)) await measure(gen, s, path, 1);
      // This set's share of the rounds (the first sets take the remainder).
      const setRounds = Math.floor(rounds / sets) + (set < rounds % sets ? 1 : 0);
      for (let round = 0; round < setRounds; round++) {
        for (const [route, path] of Object.entries(routes)) {
          if (mode === 'concurrent') {
            const xs = await Promise.all(servers.map((s) => measure(gen, s, path, durationS)));
            for (const [i, s] of servers.entries()) add(route, s, xs[i]!);
            continue;
          }
          // Rotate the order so no server always runs first (or right after another).
          for (let i = 0; i < servers.length; i++) {
            const s = servers[(i + round) % servers.length]!;
            add(route, s, await measure(gen, s, path, durationS));
          }
        }
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  }
  const [raw, hyp, fastify, fastifyFeatures] = servers as [Server, Server, Server, Server];
  const out = [
    `HTTP/1.1, ${gen.name}; ${mode === 'concurrent' ? 'all servers loaded at once, sharing one core' : 'one server at a time, order rotated each round'}; ${rounds} rounds x ${durationS}s per route, in ${sets} set${sets === 1 ? '' : 's'} of fresh processes; ` +
      (!pinning
        ? 'no CPU pinning'
        : gen === wrkGenerator
          ? `servers pinned to core ${pinning.server}, load generators to core ${pinning.loader}`
          : `servers pinned to core ${pinning.server}, load generated in this process`),
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
    out.push(
      `  ${route.padEnd(5)} hyp vs ${fastifyFeatures.name} (same per-request work as hyp; a reference, not a target): ${ratio(route, hyp, fastifyFeatures, (x) => x.rps).toFixed(2)}x`,
    );
  }
  return out;
}
