/**
 * Baseline for the restart benchmark: Node's cluster module doing the usual
 * rolling restart on SIGUSR2 — fork a new worker, wait until it listens,
 * then `disconnect()` the old one (killed after a PM2-style kill timeout) —
 * one worker at a time.
 * Prints `listening <port>` once up and `restarted <n>` after each restart.
 */
import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:http';

const workers = Number(process.env.BENCH_WORKERS ?? 2);
const port = Number(process.env.BENCH_PORT ?? 0);
const killTimeoutMs = Number(process.env.BENCH_KILL_TIMEOUT ?? 1600);

if (cluster.isPrimary) {
  let restarts = 0;
  const fork = () =>
    new Promise<Worker>((resolve) => {
      const w = cluster.fork({ BENCH_PORT: String(port) });
      w.once('listening', (addr) => {
        if (!process.env.BENCH_ANNOUNCED) {
          process.env.BENCH_ANNOUNCED = '1';
          process.stdout.write(`listening ${addr.port}\n`);
        }
        resolve(w);
      });
    });
  const alive: Worker[] = [];
  for (let i = 0; i < workers; i++) alive.push(await fork());
  let rolling = false;
  process.on('SIGUSR2', async () => {
    if (rolling) return;
    rolling = true;
    for (let i = 0; i < alive.length; i++) {
      const old = alive[i]!;
      alive[i] = await fork();
      await new Promise<void>((resolve) => {
        // disconnect() waits for every connection to end, which keep-alive
        // clients under load never do; like PM2's kill_timeout (1600 ms by
        // default), stop waiting and kill.
        const timer = setTimeout(() => old.process.kill('SIGKILL'), killTimeoutMs);
        old.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        old.disconnect();
      });
    }
    rolling = false;
    process.stdout.write(`restarted ${++restarts}\n`);
  });
  process.on('SIGTERM', () => {
    for (const w of alive) w.kill();
    process.exit(0);
  });
} else {
  // The port is shared through the primary (cluster's round-robin handle).
  createServer((req, res) => {
    res.setHeader('content-type', 'text/plain; charset=utf-8');
    res.end(req.url === '/api/ping' ? 'pong' : 'not found');
  }).listen(port, '127.0.0.1');
}
