/**
 * One real worker under connection churn: short HTTP/1.1 connections (raw
 * paths that match no route, unknown methods), h2c sessions (closed and
 * destroyed, odd :method values), WebSocket clients that join, subscribe,
 * leave and go (closed or cut), and TLS connections to a TCP service, full
 * and resumed. Afterwards the worker holds the fds and connections it held
 * before, and /metrics has the series it had: no label per raw path, method,
 * connection or client. Counts with a small fixed slack; no timing or heap
 * assertions (the 20k/5k runs are done by hand with the same figures).
 */
import { readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect as connect2 } from 'node:http2';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { demoApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let pki: TestPki;
let sup: Running | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

/** `n` calls of `one`, `width` at a time; the failures are counted, not thrown. */
async function churn(n: number, width: number, one: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        await one(i).catch(() => {
          failed++;
        });
      }
    }),
  );
  return failed;
}

function http1(port: number, i: number): Promise<void> {
  const path = ['/api/ping', `/raw/${i}/path`, `/api/ping?q=${i}`, `/static/nope-${i}.js`][i % 4]!;
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: i % 9 === 0 ? 'PATCH' : 'GET', agent: false },
      (res) => {
        res.resume();
        res.on('end', resolve);
      },
    );
    req.setHeader('connection', 'close');
    req.on('error', reject);
    req.end();
  });
}

function h2c(port: number, i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const session = connect2(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request({
      ':path': i % 2 === 0 ? '/api/ping' : `/h2/${i}`,
      ':method': i % 5 === 0 ? `X-${i}` : 'GET',
    });
    stream.on('error', () => undefined);
    stream.resume();
    stream.on('close', () => {
      if (i % 3 === 0) session.destroy();
      else session.close();
      resolve();
    });
    stream.end();
  });
}

function wsClient(port: number, i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    ws.on('error', reject);
    ws.on('open', () => {
      const room = `room-${i % 20}`;
      ws.send(JSON.stringify({ type: 'join_room', data: { room_id: room } }));
      ws.send(JSON.stringify({ type: 'subscribe', data: { channel: `ch-${i}` } }));
      ws.send(JSON.stringify({ type: 'leave_room', data: { room_id: room } }));
      // gone after the hub's answers, half with a close handshake, half cut
      ws.once('message', () => (i % 2 === 0 ? ws.close() : ws.terminate()));
    });
    ws.on('close', () => resolve());
  });
}

function tlsEcho(port: number, ca: Buffer, session: { last: Buffer | undefined }, i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      servername: 'localhost',
      session: i % 2 === 0 ? session.last : undefined,
      maxVersion: i % 4 < 2 ? 'TLSv1.3' : 'TLSv1.2',
    });
    socket.on('session', (s: Buffer) => {
      session.last = s;
    });
    socket.on('error', reject);
    socket.on('secureConnect', () => socket.write('ping\n'));
    socket.once('data', () => (i % 3 === 0 ? socket.destroy() : socket.end()));
    socket.on('close', () => resolve());
  });
}

/** Series of a scrape, and the values seen of the labels that must stay bounded. */
function seriesOf(text: string): { series: number; route: string[]; method: string[] } {
  // nodejs_gc_duration_seconds appears per gc kind once one has run (27 series at most)
  const lines = text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('nodejs_gc_duration_seconds'));
  const route = new Set<string>();
  const method = new Set<string>();
  for (const line of lines) {
    const r = /route="([^"]*)"/.exec(line);
    if (r) route.add(r[1]!);
    const m = /method="([^"]*)"/.exec(line);
    if (m) method.add(m[1]!);
  }
  return { series: lines.length, route: [...route].sort(), method: [...method].sort() };
}

describe('worker soak: connection churn', () => {
  it('fds, connections and /metrics series are back to where they were', async () => {
    sup = await startSupervisor({
      app: demoApp,
      workers: 1,
      sets: [
        'tcp.echo.addr=127.0.0.1:0',
        'tcp.echo.tls.enabled=true',
        `tcp.echo.tls.cert_file=${pki.serverCert}`,
        `tcp.echo.tls.key_file=${pki.serverKey}`,
      ],
    });
    const running = sup;
    const status = await running.status();
    const worker = status.workers[0]!;
    const httpPort = running.httpPort;
    const tlsPort = status.listeners.find((l) => l.name === 'echo')!.port;
    const ca = pki.read(pki.caCert);
    const session = { last: undefined as Buffer | undefined };
    const fds = () => readdirSync(`/proc/${worker.pid}/fd`).length;
    const idle = () =>
      until(
        async () => {
          const w = (await running.status()).workers[0]!;
          return w.pid === worker.pid && w.connections === 0 && w.inflight === 0 ? w : undefined;
        },
        'the worker idle (0 connections), by its heartbeat',
        20_000,
      );
    const pass = async (n: { http: number; h2: number; ws: number; tls: number }) => ({
      http: await churn(n.http, 16, (i) => http1(httpPort, i)),
      h2: await churn(n.h2, 8, (i) => h2c(httpPort, i)),
      ws: await churn(n.ws, 8, (i) => wsClient(httpPort, i)),
      tls: await churn(n.tls, 4, (i) => tlsEcho(tlsPort, ca, session, i)),
    });

    // a first pass creates every label set the traffic has (route, method, status) and warms the pools
    expect(await pass({ http: 40, h2: 20, ws: 20, tls: 20 })).toEqual({ http: 0, h2: 0, ws: 0, tls: 0 });
    await idle();
    const baseFds = fds();
    const baseSeries = seriesOf(await (await running.admin('/metrics')).text());

    expect(await pass({ http: 6000, h2: 1500, ws: 1500, tls: 600 })).toEqual({
      http: 0,
      h2: 0,
      ws: 0,
      tls: 0,
    });
    const after = await idle();
    const afterSeries = seriesOf(await (await running.admin('/metrics')).text());

    expect(after.pid).toBe(worker.pid);
    expect((after as unknown as { ws_clients: number }).ws_clients).toBe(0);
    expect(fds()).toBeLessThanOrEqual(baseFds + 2);
    // 6000 connections on raw paths and 300 h2c :method values later: the same routes and methods
    expect(afterSeries.route).toEqual(baseSeries.route);
    expect(afterSeries.method).toEqual(baseSeries.method);
    // a few may appear once (a drop reason, a handle type); one per connection would be thousands
    expect(afterSeries.series).toBeLessThanOrEqual(baseSeries.series + 10);
  });
});
