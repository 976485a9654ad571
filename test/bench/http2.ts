/**
 * h2c throughput: hyp (1 worker, through the router, HTTP/1.1 + h2c on one
 * port) vs raw node:http2 on its compat API (the `(req, res)` handler most
 * code is written against), hello world and a JSON route, in the same run.
 * Raw node:http2 on its stream API (`stream.respond`) is printed as a
 * reference: the fastest a hand-written handler gets.
 *
 * With h2load (nghttp2-client) installed, the method is the HTTP/1.1
 * bench's (rounds.ts): both servers pinned to one core and loaded at once,
 * one h2load per server on the other core, ratios within a round, rounds
 * over several sets of fresh processes. Without it, node's http2 client in
 * this process loads one server at a time — a weaker method: the client is
 * as slow as the servers and shares their cores, so its ratios swing by
 * ±20 % between runs.
 */
import { execFile, spawnSync } from 'node:child_process';
import { type ClientHttp2Session, connect } from 'node:http2';
import { promisify } from 'node:util';
import { pinning } from './procs.js';
import { type BenchServer, type Load, type Mode, runRounds, startHypServer, startScript } from './rounds.js';

const sessions = 4;
const streamsPerSession = 25;
const maxRequests = 2_000_000;
const run = promisify(execFile);

async function startServers(): Promise<BenchServer[]> {
  return [
    await startScript('node:http2 (raw)', 'hello-node-h2.js'),
    await startHypServer('hyp (1 worker, router)', ['server.protocol=auto']),
    await startScript('node:http2 stream API', 'hello-node-h2-stream.js'),
  ];
}

/** h2load: prior-knowledge h2c, `sessions` connections x `streamsPerSession` streams. */
const h2load: Load = async (url, seconds) => {
  const args = ['-t1', `-c${sessions}`, `-m${streamsPerSession}`, `-D${seconds}`, url];
  const { stdout } = pinning
    ? await run('taskset', ['-c', pinning.loader, 'h2load', ...args])
    : await run('h2load', args);
  const done = stdout.match(
    /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/,
  );
  const codes = stdout.match(/status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  if (!done || !codes) throw new Error(`${url}: unreadable h2load output\n${stdout}`);
  const bad = [done[2], done[3], done[4], codes[1], codes[2], codes[3]].map(Number);
  if (bad.some((n) => n > 0))
    throw new Error(`${url}: h2load saw failures (failed/errored/timeout/3xx/4xx/5xx: ${bad.join('/')})`);
  return Number(done[1]);
};

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

/** node's http2 client in this process, bounded by time and count. */
const nodeClient: Load = async (url, seconds) => {
  const { port, pathname } = new URL(url);
  const open_ = await Promise.all(Array.from({ length: sessions }, () => open(Number(port))));
  let ok = 0;
  let failed = 0;
  const end = performance.now() + seconds * 1000;
  const lane = async (session: ClientHttp2Session) => {
    while (performance.now() < end && ok + failed < maxRequests) {
      try {
        if ((await one(session, pathname)) === 200) ok++;
        else failed++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(open_.flatMap((s) => Array.from({ length: streamsPerSession }, () => lane(s))));
  for (const s of open_) s.close();
  if (failed) throw new Error(`h2c ${url}: ${failed} failed requests`);
  return ok;
};

export async function runHttp2Bench(): Promise<string[]> {
  const withH2load = !spawnSync('h2load', ['--version']).error && process.env.BENCH_LOADGEN !== 'node';
  const mode: Mode = withH2load && process.env.BENCH_MODE !== 'sequential' ? 'concurrent' : 'sequential';
  const durationS = Number(process.env.BENCH_DURATION ?? (withH2load ? 3 : 5));
  const rounds = Number(process.env.BENCH_ROUNDS ?? (withH2load ? 9 : 3));
  const sets = Math.max(1, Math.min(rounds, Number(process.env.BENCH_SETS ?? (withH2load ? 3 : 1))));
  const routes = { hello: '/', json: '/json' } as const;
  const r = await runRounds({
    mode,
    rounds,
    sets,
    durationS,
    routes,
    start: startServers,
    load: withH2load ? h2load : nodeClient,
  });
  const [raw, hyp, streamApi] = r.servers as [BenchServer, BenchServer, BenchServer];
  const out = [
    `h2c, ${withH2load ? 'h2load (1 thread' : "node's http2 client (in this process"}, ${sessions} connections x ${streamsPerSession} concurrent streams); ` +
      `${mode === 'concurrent' ? 'both servers loaded at once, sharing one core' : 'one server at a time, order rotated each round'}; ` +
      `${rounds} rounds x ${durationS}s per route, in ${sets} set${sets === 1 ? '' : 's'} of fresh processes; ` +
      (pinning ? `servers pinned to core ${pinning.server}` : 'no CPU pinning') +
      (pinning && withH2load ? `, load generators to core ${pinning.loader}` : ''),
    '  ratios: median over rounds of the ratio within a round; CPU per request of the serving process from /proc',
  ];
  for (const route of Object.keys(routes) as Array<keyof typeof routes>) {
    for (const s of r.servers) {
      out.push(
        `  ${route.padEnd(5)} ${s.name.padEnd(24)} ${Math.round(r.medianRps(route, s)).toString().padStart(7)} req/s  ${r.ratio(route, s, raw).toFixed(2)}x node:http2  | ${r.medianCpu(route, s).toFixed(1).padStart(5)} µs CPU/req`,
      );
    }
    const xs = r.perRound(route, hyp, raw);
    out.push(
      `  ${route.padEnd(5)} hyp per round vs node:http2: min ${Math.min(...xs).toFixed(2)}, max ${Math.max(...xs).toFixed(2)}; ` +
        `hyp vs ${streamApi.name} (a reference, not the baseline): ${r.ratio(route, hyp, streamApi).toFixed(2)}x`,
    );
  }
  return out;
}
