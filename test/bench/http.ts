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
 * Server CPU time per request comes from /proc/<pid>/stat. The loop itself
 * is rounds.ts, shared with the h2c bench.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { pinning } from './procs.js';
import { type BenchServer, type Load, type Mode, runRounds, startHypServer, startScript } from './rounds.js';

const connections = 50;
const run = promisify(execFile);

async function startServers(): Promise<BenchServer[]> {
  return [
    await startScript('node:http (raw)', 'hello-node.js'),
    await startHypServer('hyp (1 worker, router)'),
    await startScript('fastify', 'hello-fastify.js'),
    await startScript('fastify + id + histogram', 'hello-fastify-features.js'),
  ];
}

type Generator = { name: string; load: Load };

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

export async function runHttpBench(): Promise<string[]> {
  const gen = pickGenerator();
  const mode = pickMode(gen);
  const durationS = Number(process.env.BENCH_DURATION ?? (mode === 'concurrent' ? 3 : 2));
  const rounds = Number(process.env.BENCH_ROUNDS ?? (mode === 'concurrent' ? 12 : 9));
  const sets = Math.max(1, Math.min(rounds, Number(process.env.BENCH_SETS ?? 3)));
  const routes = { hello: '/', json: '/json' } as const;
  const r = await runRounds({ mode, rounds, sets, durationS, routes, start: startServers, load: gen.load });
  const [raw, hyp, fastify, fastifyFeatures] = r.servers as [
    BenchServer,
    BenchServer,
    BenchServer,
    BenchServer,
  ];
  const out = [
    `HTTP/1.1, ${gen.name}; ${mode === 'concurrent' ? 'all servers loaded at once, sharing one core' : 'one server at a time, order rotated each round'}; ${rounds} rounds x ${durationS}s per route, in ${sets} set${sets === 1 ? '' : 's'} of fresh processes; ` +
      (!pinning
        ? 'no CPU pinning'
        : gen === wrkGenerator
          ? `servers pinned to core ${pinning.server}, load generators to core ${pinning.loader}`
          : `servers pinned to core ${pinning.server}, load generated in this process`),
    '  ratios: median over rounds of the ratio within a round; CPU per request of the serving process from /proc',
  ];
  for (const route of Object.keys(routes) as Array<keyof typeof routes>) {
    for (const s of r.servers) {
      out.push(
        `  ${route.padEnd(5)} ${s.name.padEnd(24)} ${Math.round(r.medianRps(route, s)).toString().padStart(7)} req/s  ${r.ratio(route, s, raw).toFixed(2)}x node:http  ${r.ratio(route, s, fastify).toFixed(2)}x fastify  | ${r.medianCpu(route, s).toFixed(1).padStart(5)} µs CPU/req`,
      );
    }
    const min = (xs: number[]) => Math.min(...xs).toFixed(2);
    out.push(
      `  ${route.padEnd(5)} hyp per round: vs node:http min ${min(r.perRound(route, hyp, raw))}, vs fastify min ${min(r.perRound(route, hyp, fastify))}  (targets: median >= 0.90x node:http, >= 1.00x fastify)`,
    );
    out.push(
      `  ${route.padEnd(5)} hyp vs ${fastifyFeatures.name} (same per-request work as hyp; a reference, not a target): ${r.ratio(route, hyp, fastifyFeatures).toFixed(2)}x`,
    );
  }
  return out;
}
