/**
 * HTTP/1.1 throughput: hyp (1 worker, through the router) vs raw node:http
 * vs Fastify. Same load generator (autocannon, in this process), each server
 * in its own process, all started up front and measured in alternating
 * rounds so a change in background load hits every server alike. Reports
 * the median req/s and the server's CPU time per request (read from
 * /proc/<pid>/stat), which is far steadier than req/s on a shared machine.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { median } from './load.js';
import { dist, hypStatus, startHyp, startProc } from './procs.js';

const durationS = Number(process.env.BENCH_DURATION ?? 4);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = 50;
const clockTicks = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

interface Server {
  name: string;
  port: number;
  pid: number;
  stop: () => Promise<void>;
}

async function startServers(): Promise<Server[]> {
  const script = (name: string) => join(dist, 'test', 'bench', 'servers', name);
  const raw = startProc([script('hello-node.js')]);
  const fastify = startProc([script('hello-fastify.js')]);
  const hyp = await startHyp(script('hello-hyp.js'), ['supervisor.workers=1']);
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

interface Sample {
  rps: number;
  cpuUsPerRequest: number;
}

async function measure(server: Server, path: string): Promise<Sample> {
  const url = `http://127.0.0.1:${server.port}${path}`;
  const cpu0 = cpuSeconds(server.pid);
  const r = await autocannon({ url, connections, duration: durationS });
  const cpu1 = cpuSeconds(server.pid);
  if (r.non2xx || r.errors) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return { rps: r.requests.average, cpuUsPerRequest: ((cpu1 - cpu0) * 1e6) / Math.max(1, r.requests.total) };
}

export async function runHttpBench(): Promise<string[]> {
  const servers = await startServers();
  const routes = { hello: '/', json: '/json' } as const;
  const samples = new Map<string, Sample[]>();
  try {
    for (const s of servers) {
      for (const path of Object.values(routes))
        await autocannon({ url: `http://127.0.0.1:${s.port}${path}`, connections, duration: 1 });
    }
    for (let round = 0; round < rounds; round++) {
      for (const [route, path] of Object.entries(routes)) {
        for (const s of servers) {
          const key = `${route} ${s.name}`;
          samples.set(key, [...(samples.get(key) ?? []), await measure(s, path)]);
        }
      }
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
  const out = [
    `HTTP/1.1, autocannon ${connections} connections, ${rounds} alternating rounds x ${durationS}s, median; server CPU per request from /proc (load generator and server share 2 cores)`,
  ];
  for (const route of Object.keys(routes)) {
    const get = (name: string) => {
      const xs = samples.get(`${route} ${name}`)!;
      return { rps: median(xs.map((x) => x.rps)), cpu: median(xs.map((x) => x.cpuUsPerRequest)) };
    };
    const base = get('node:http (raw)');
    const fastify = get('fastify');
    for (const s of servers) {
      const r = get(s.name);
      out.push(
        `  ${route.padEnd(5)} ${s.name.padEnd(24)} ${Math.round(r.rps).toString().padStart(7)} req/s  ${(r.rps / base.rps).toFixed(2)}x node:http  ${(r.rps / fastify.rps).toFixed(2)}x fastify  | ${r.cpu.toFixed(1).padStart(5)} µs CPU/req  ${(base.cpu / r.cpu).toFixed(2)}x node:http efficiency  ${(fastify.cpu / r.cpu).toFixed(2)}x fastify`,
      );
    }
  }
  return out;
}
