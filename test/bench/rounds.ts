/**
 * The measuring loop of the throughput benches (HTTP/1.1 and h2c): servers in
 * their own processes, many rounds split over several sets of fresh
 * processes, and in each round either every server loaded AT THE SAME TIME
 * (`concurrent`: pinned to one core, they split it under the kernel's fair
 * scheduler, so each one's req/s is inversely proportional to its CPU cost
 * per request and all see the same machine state) or one after another in
 * an order that rotates (`sequential`). Ratios are taken within a round,
 * then the median, which cancels the machine's drift between rounds.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { median } from './load.js';
import { dist, hypStatus, startHyp, startProc } from './procs.js';

export type Mode = 'concurrent' | 'sequential';

export interface BenchServer {
  name: string;
  port: number;
  /** The process that serves (hyp: its one worker). */
  pid: number;
  stop: () => Promise<void>;
}

export interface Sample {
  rps: number;
  cpuUsPerRequest: number;
}

/** A load generator: requests completed in `seconds` against `url`; throws on any error or non-2xx. */
export type Load = (url: string, seconds: number) => Promise<number>;

const script = (file: string) => join(dist, 'test', 'bench', 'servers', file);

/** A bench server script (prints `listening <port>`), pinned to the server core. */
export async function startScript(name: string, file: string): Promise<BenchServer> {
  const proc = startProc([script(file)], {}, true);
  const port = Number((await proc.waitLine(/^listening (\d+)/))[1]);
  return { name, port, pid: proc.child.pid!, stop: proc.stop };
}

/** hyp with one worker serving the bench app, pinned; its pid is the worker's. */
export async function startHypServer(name: string, sets: string[] = []): Promise<BenchServer> {
  const hyp = await startHyp(script('hello-hyp.js'), ['supervisor.workers=1', ...sets], true);
  const status = (await hypStatus(hyp.adminPort)) as unknown as { workers: Array<{ pid: number }> };
  return { name, port: hyp.httpPort, pid: status.workers[0]!.pid, stop: hyp.stop };
}

const clockTicks = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

async function measure(load: Load, server: BenchServer, path: string, seconds: number): Promise<Sample> {
  const cpu0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  const requests = await load(`http://127.0.0.1:${server.port}${path}`, seconds);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(server.pid);
  return { rps: requests / elapsed, cpuUsPerRequest: ((cpu1 - cpu0) * 1e6) / Math.max(1, requests) };
}

export interface RoundsOptions<R extends string> {
  mode: Mode;
  rounds: number;
  /** Sets of fresh processes the rounds are split over (the first sets take the remainder). */
  sets: number;
  durationS: number;
  routes: Record<R, string>;
  /** Start every server of one set; the same names in every set. */
  start: () => Promise<BenchServer[]>;
  load: Load;
}

/** Every server's samples per route, in round order, so index i of two series is the same round. */
export class Rounds<R extends string> {
  private readonly samples = new Map<string, Sample[]>();

  constructor(
    /** The servers of the first set: names and order are the same in every set. */
    readonly servers: BenchServer[],
  ) {}

  add(route: R, s: BenchServer, x: Sample): void {
    const key = `${route} ${s.name}`;
    this.samples.set(key, [...(this.samples.get(key) ?? []), x]);
  }

  of(route: R, s: BenchServer): Sample[] {
    return this.samples.get(`${route} ${s.name}`)!;
  }

  /** Per-round req/s ratios of `a` to `b`. */
  perRound(route: R, a: BenchServer, b: BenchServer): number[] {
    const bs = this.of(route, b);
    return this.of(route, a).map((x, i) => x.rps / bs[i]!.rps);
  }

  /** Median over rounds of the req/s ratio within a round. */
  ratio(route: R, a: BenchServer, b: BenchServer): number {
    return median(this.perRound(route, a, b));
  }

  medianRps(route: R, s: BenchServer): number {
    return median(this.of(route, s).map((x) => x.rps));
  }

  medianCpu(route: R, s: BenchServer): number {
    return median(this.of(route, s).map((x) => x.cpuUsPerRequest));
  }
}

export async function runRounds<R extends string>(o: RoundsOptions<R>): Promise<Rounds<R>> {
  const routes = Object.entries(o.routes) as Array<[R, string]>;
  let result: Rounds<R> | undefined;
  for (let set = 0; set < o.sets; set++) {
    const servers = await o.start();
    const rounds: Rounds<R> = result ?? new Rounds(servers);
    result = rounds;
    try {
      for (const s of servers) for (const [, path] of routes) await measure(o.load, s, path, 1); // warm-up
      const setRounds = Math.floor(o.rounds / o.sets) + (set < o.rounds % o.sets ? 1 : 0);
      for (let round = 0; round < setRounds; round++) {
        for (const [route, path] of routes) {
          if (o.mode === 'concurrent') {
            const xs = await Promise.all(servers.map((s) => measure(o.load, s, path, o.durationS)));
            for (const [i, s] of servers.entries()) rounds.add(route, s, xs[i]!);
            continue;
          }
          // Rotate the order so no server always runs first (or right after another).
          for (let i = 0; i < servers.length; i++) {
            const s = servers[(i + round) % servers.length]!;
            rounds.add(route, s, await measure(o.load, s, path, o.durationS));
          }
        }
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  }
  return result!;
}
