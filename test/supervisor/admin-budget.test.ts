/**
 * What unread admin answers hold has a byte budget (64 MiB), on a real
 * supervisor whose /metrics answer (a worker with 90 000 wide series: about
 * 41 MB) outgrows the loopback socket buffers many times over.
 * Scrapes that each take the first bytes of their answer and read no more,
 * one every second and a bit so that each is a rendering (a body) of its
 * own, held one body each for the 10 s stall limit. Now a new answer that
 * would take the bytes held past the budget closes the connections with
 * the oldest unread answers, counted in
 * hyp_admin_connections_shed_total{reason="budget"}; a scrape being read
 * steadily gets its whole answer, and /health answers throughout.
 */
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Running, startSupervisor } from '../helpers/supervisor.js';
import { wideMetricsApp } from './admin-helpers.js';

const MB = 2 ** 20;
const budget = 64 * MB;

const rssBytes = (pid: number) =>
  Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

/**
 * GET `path` on a connection of its own, closed after the answer (as the
 * kubelet's probes): no keep-alive connection is left to the supervisor's
 * descriptors counted here.
 */
function fetchOnce(port: number, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`${path}: no answer in 20 s`)));
    req.once('error', reject);
  });
}

/** hyp_admin_connections_shed_total by reason, as /metrics serves it (absent: an empty map). */
async function shedCounts(sup: Running): Promise<Map<string, number>> {
  const text = (await fetchOnce(sup.adminPort, '/metrics')).body.toString();
  const counts = new Map<string, number>();
  for (const m of text.matchAll(/^hyp_admin_connections_shed_total\{reason="([a-z]+)"\} (\d+)$/gm))
    counts.set(m[1]!, Number(m[2]));
  return counts;
}

/**
 * How many of `peers` the supervisor still holds open: their connections to
 * the admin port that are established on its side too (one it closed is in
 * FIN-WAIT there, its FIN queued behind the bytes the peer has not read).
 */
function heldOpen(adminPort: number, peers: Socket[]): number {
  const ports = new Set(peers.map((s) => s.localPort));
  let held = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const [, local, remote, state] = line.trim().split(/\s+/);
    if (!local || !remote) continue;
    const port = (address: string) => Number.parseInt(address.split(':')[1] ?? '', 16);
    if (port(local) === adminPort && ports.has(port(remote)) && state === '01') held++;
  }
  return held;
}

/** A connection that asks /metrics, takes the first bytes of the answer and reads no more; resolves once they came. */
function readsTheStart(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n'));
    socket.once('data', () => {
      socket.pause();
      resolve(socket);
    });
    socket.on('error', () => {});
    socket.once('close', () => reject(new Error('closed before its answer began')));
  });
}

/**
 * A connection that asks /metrics and takes the answer at `bytesPerSecond`;
 * resolves to the bytes it got once it had `whole` or the server closed it.
 */
function readsSteadily(port: number, bytesPerSecond: number, whole: number): Promise<number> {
  return new Promise((resolve) => {
    let got = 0;
    const started = performance.now();
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n'));
    socket.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= whole) return void socket.destroy();
      // Ahead of its pace: wait until it is due (a late timer is made up for, not carried on).
      const ahead = got - (bytesPerSecond * (performance.now() - started)) / 1000;
      if (ahead <= 0) return;
      socket.pause();
      setTimeout(() => socket.resume(), (ahead / bytesPerSecond) * 1000);
    });
    socket.on('error', () => {});
    socket.once('close', () => resolve(got));
  });
}

describe('admin server: a byte budget on unread answers', () => {
  let sup: Running;
  /** Bytes of the /metrics body. */
  let body = 0;
  beforeAll(async () => {
    sup = await startSupervisor({
      app: wideMetricsApp('', { keyWidth: 450 }),
      workers: 1,
    });
    body = (await fetchOnce(sup.adminPort, '/metrics')).body.length;
    expect(body).toBeGreaterThan(budget / 2);
  }, 60_000);
  afterAll(async () => {
    await sup?.stop();
  });

  it('budget is a shedding reason served from 0', async () => {
    expect((await shedCounts(sup)).get('budget')).toBe(0);
  });

  it('unread /metrics answers, each a rendering of its own, hold at most the budget and the newest; the oldest are closed and counted, a steady reader is not', async () => {
    const count = 7;
    const before = (await shedCounts(sup)).get('budget') ?? 0;
    // Past the second in which the last rendering is served again: the first scrape renders afresh.
    await new Promise((r) => setTimeout(r, 1500));
    const rssBefore = rssBytes(sup.proc.pid!);
    let rssMost = rssBefore;
    const sample = setInterval(() => {
      rssMost = Math.max(rssMost, rssBytes(sup.proc.pid!));
    }, 20);
    // Takes its answer at two and a half times the pace that ends it within
    // the 10 s stall limit. It shares the first rendering with the first
    // unread scrape: closing that one frees nothing while the reader takes it.
    const reader = readsSteadily(sup.adminPort, body / 4, body);
    const sockets: Socket[] = [];
    const health: number[] = [];
    /** The most connections with an unread answer (each a body of its own) the supervisor held open at once. */
    let mostUnread = 0;
    try {
      for (let i = 0; i < count; i++) {
        sockets.push(await readsTheStart(sup.adminPort));
        health.push((await fetchOnce(sup.adminPort, '/health')).status);
        // Past the reuse second: the next scrape is a rendering (a body) of its own.
        await new Promise((r) => setTimeout(r, 1100));
        mostUnread = Math.max(mostUnread, heldOpen(sup.adminPort, sockets));
      }
    } finally {
      clearInterval(sample);
      for (const s of sockets) s.destroy();
    }
    const read = await reader;
    const counts = await shedCounts(sup);
    const shed = (counts.get('budget') ?? 0) - before;
    console.log(
      `body ${Math.round(body / MB)} MB, ${count} unread scrapes: budget shed ${shed}, at most ${mostUnread} unread answers held at once; supervisor RSS ${Math.round(rssBefore / MB)} -> peak ${Math.round(rssMost / MB)} MB; the steady reader got ${read} bytes; shed by reason ${JSON.stringify([...counts])}`,
    );
    expect(health).toEqual(Array(count).fill(200));
    expect(read).toBeGreaterThanOrEqual(body);
    expect(shed).toBeGreaterThan(0);
    // Old code: 5 bodies of 41 MB held at once, each until the 10 s stall
    // limit closed it; now the budget's worth and the newest (1, or 2 while
    // the first is shared with the reader).
    expect(mostUnread * body).toBeLessThanOrEqual(budget + body);
  }, 60_000);
});
