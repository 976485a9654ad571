/**
 * WebSocket benchmark: fan-out to 1,000 clients subscribed to one channel,
 * and server memory per idle connection, for
 *
 * - hyp's hub (json and msgpack subprotocols),
 * - a naive `ws` server that serializes per client in a send loop
 *   (json and msgpack), the loop most hand-rolled servers write,
 * - Socket.IO (websocket transport, one room, `io.to(room).emit`).
 *
 * Each server runs alone in a child process (`node dist/test/bench/ws.js
 * --serve <kind> <codec>`); the 1,000 clients run in this process and only
 * count frames. Server and load generator share the machine's cores, which the
 * setup line reports. Figures: deliveries/s (messages × subscribers / time
 * until every client has every message), server CPU per delivery, and
 * memory per idle connection (server heap + external + array buffers after GC,
 * and RSS), each beside its baselines as ratios.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

type Kind = 'hyp' | 'ws' | 'sio';
type CodecKind = 'json' | 'msgpack';

const subscribers = 1_000;
const idleConnections = 1_000;
const burstMessages = 200;
const bursts = 3;
const bodyBytes = 64;
const burstTimeoutMs = 120_000;

interface Command {
  cmd: 'burst' | 'mem' | 'cpu';
  n?: number;
}

// ---- server side (child process) ---------------------------------------------

async function serve(kind: Kind, codec: CodecKind): Promise<void> {
  const server = createServer((_req, res) => res.writeHead(404).end());
  const body = 'x'.repeat(bodyBytes);
  let publish: (payload: { seq: number; body: string }) => void;

  if (kind === 'hyp') {
    const { createHub } = await import('../../apps/server/ws/hub.js');
    const hub = createHub({ pingIntervalMs: 0, historySize: 1000, allowedOrigins: ['*'] });
    server.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head));
    publish = (payload) => hub.publish('bench', payload);
  } else if (kind === 'ws') {
    const [{ WebSocketServer }, { encode }] = await Promise.all([import('ws'), import('@msgpack/msgpack')]);
    const wss = new WebSocketServer({ server, perMessageDeflate: false });
    const members = new Set<import('ws').WebSocket>();
    wss.on('connection', (ws) => {
      ws.on('message', (data) => {
        if (String(data).includes('subscribe')) members.add(ws);
      });
      ws.on('close', () => members.delete(ws));
    });
    publish = (payload) => {
      const message = { type: 'message', channel: 'bench', data: payload, timestamp: Date.now() * 1e6 };
      for (const ws of members) {
        if (codec === 'json') ws.send(JSON.stringify(message));
        else ws.send(encode(message));
      }
    };
  } else {
    const { Server } = await import('socket.io');
    const io = new Server(server, {
      transports: ['websocket'],
      perMessageDeflate: false,
      serveClient: false,
    });
    io.on('connection', (socket) => socket.join('bench'));
    publish = (payload) => io.to('bench').emit('message', payload);
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send!({ ready: true, port: (server.address() as AddressInfo).port });

  process.on('message', async (m: Command) => {
    if (m.cmd === 'burst') {
      for (let seq = 0; seq < (m.n ?? 0); seq++) {
        publish({ seq, body });
        // yield now and then so sockets flush, the same pacing for every server
        if (seq % 10 === 9) await new Promise((r) => setImmediate(r));
      }
      process.send!({ done: true });
    } else if (m.cmd === 'mem') {
      for (let i = 0; i < 3; i++) {
        (globalThis as { gc?: () => void }).gc?.();
        await new Promise((r) => setTimeout(r, 50));
      }
      process.send!({ mem: process.memoryUsage() });
    } else if (m.cmd === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpu: u.user + u.system });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- load generator (this process) -------------------------------------------

interface Child {
  proc: ChildProcess;
  port: number;
  ask<T>(cmd: Command, key: string): Promise<T>;
}

async function startServer(kind: Kind, codec: CodecKind): Promise<Child> {
  const proc = fork(fileURLToPath(import.meta.url), ['--serve', kind, codec], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [ready] = (await once(proc, 'message')) as [{ port: number }];
  return {
    proc,
    port: ready.port,
    async ask<T>(cmd: Command, key: string): Promise<T> {
      const answer = new Promise<T>((resolve) => {
        const on = (m: Record<string, unknown>) => {
          if (key in m) {
            proc.off('message', on);
            resolve(m[key] as T);
          }
        };
        proc.on('message', on);
      });
      proc.send(cmd);
      return answer;
    },
  };
}

async function stopServer(child: Child): Promise<void> {
  child.proc.disconnect();
  if (child.proc.exitCode === null) await once(child.proc, 'exit');
}

interface Clients {
  count(): number;
  close(): Promise<void>;
}

async function inBatches(total: number, batch: number, open: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < total; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, total - i) }, (_, j) => open(i + j)));
  }
}

async function connectWs(port: number, codec: CodecKind, n: number): Promise<Clients> {
  const { WebSocket } = await import('ws');
  let received = 0;
  const sockets: import('ws').WebSocket[] = [];
  await inBatches(n, 50, async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, codec === 'json' ? [] : [codec], {
      perMessageDeflate: false,
    });
    ws.on('message', () => {
      received++;
    });
    ws.on('error', () => {});
    await once(ws, 'open');
    // a JSON subscribe is understood by the hub (json codec) and by the naive server;
    // msgpack clients of the hub send a msgpack subscribe
    if (codec === 'json') ws.send('{"type":"subscribe","data":{"channel":"bench"}}');
    else {
      const { msgpackCodec } = await import('../../apps/server/ws/codecs/msgpack.js');
      const { envelope } = await import('../../apps/server/ws/envelope.js');
      ws.send(
        msgpackCodec.marshal(envelope({ type: 'subscribe', data: Buffer.from('{"channel":"bench"}') })),
      );
    }
    sockets.push(ws);
  });
  return {
    count: () => received,
    async close() {
      for (const ws of sockets) ws.terminate();
    },
  };
}

async function connectSio(port: number, n: number): Promise<Clients> {
  const { io } = await import('socket.io-client');
  let received = 0;
  const sockets: Array<ReturnType<typeof io>> = [];
  await inBatches(n, 50, async () => {
    const s = io(`http://127.0.0.1:${port}`, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
    });
    s.on('message', () => {
      received++;
    });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('connect_error', reject);
    });
    sockets.push(s);
  });
  return {
    count: () => received,
    async close() {
      for (const s of sockets) s.disconnect();
    },
  };
}

function connect(kind: Kind, codec: CodecKind, port: number, n: number): Promise<Clients> {
  return kind === 'sio' ? connectSio(port, n) : connectWs(port, codec, n);
}

async function settle(clients: Clients, expected: number): Promise<void> {
  const end = Date.now() + burstTimeoutMs;
  while (clients.count() < expected) {
    if (Date.now() > end) throw new Error(`only ${clients.count()} of ${expected} deliveries arrived`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

interface FanoutResult {
  deliveriesPerSec: number;
  cpuUsPerDelivery: number;
}

async function fanout(kind: Kind, codec: CodecKind): Promise<FanoutResult> {
  const server = await startServer(kind, codec);
  const clients = await connect(kind, codec, server.port, subscribers);
  await new Promise((r) => setTimeout(r, 500)); // subscriptions and acks land
  // warm-up
  let base = clients.count();
  await server.ask({ cmd: 'burst', n: 20 }, 'done');
  await settle(clients, base + 20 * subscribers);
  let deliveries = 0;
  let elapsedMs = 0;
  let cpuUs = 0;
  for (let b = 0; b < bursts; b++) {
    base = clients.count();
    const cpu0 = await server.ask<number>({ cmd: 'cpu' }, 'cpu');
    const t0 = performance.now();
    await server.ask({ cmd: 'burst', n: burstMessages }, 'done');
    await settle(clients, base + burstMessages * subscribers);
    elapsedMs += performance.now() - t0;
    cpuUs += (await server.ask<number>({ cmd: 'cpu' }, 'cpu')) - cpu0;
    deliveries += burstMessages * subscribers;
  }
  await clients.close();
  await stopServer(server);
  return { deliveriesPerSec: (deliveries / elapsedMs) * 1000, cpuUsPerDelivery: cpuUs / deliveries };
}

interface MemoryResult {
  heapPerConn: number;
  rssPerConn: number;
}

/**
 * Connections opened, subscribed and closed before the first reading. The
 * code V8 compiles for the upgrade and subscribe paths is paid once per
 * process, not per connection; left in, it was counted as per-connection
 * memory (heap snapshots on Node 26: 1.09 MB of code for hyp's first 1,000
 * connections, 0.64 MB for raw ws, which put hyp at 1.21x raw ws where its
 * objects are 1.07x).
 */
const warmupConnections = 200;

async function idleMemory(kind: Kind): Promise<MemoryResult> {
  const server = await startServer(kind, 'json');
  const warmup = await connect(kind, 'json', server.port, warmupConnections);
  await new Promise((r) => setTimeout(r, 500));
  await warmup.close();
  await new Promise((r) => setTimeout(r, 500));
  const before = await server.ask<NodeJS.MemoryUsage>({ cmd: 'mem' }, 'mem');
  const clients = await connect(kind, 'json', server.port, idleConnections);
  await new Promise((r) => setTimeout(r, 500));
  const after = await server.ask<NodeJS.MemoryUsage>({ cmd: 'mem' }, 'mem');
  await clients.close();
  await stopServer(server);
  const heap = (m: NodeJS.MemoryUsage) => m.heapUsed + m.external + m.arrayBuffers;
  return {
    heapPerConn: (heap(after) - heap(before)) / idleConnections,
    rssPerConn: (after.rss - before.rss) / idleConnections,
  };
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

/** `only` runs one half (`node dist/test/bench/ws.js memory`). */
export async function runWsBench(only?: 'fanout' | 'memory'): Promise<string[]> {
  const lines = [
    `ws setup: each server alone in a child process (node ${process.version}), ${subscribers} clients in this process (they only count frames), ${availableParallelism()} cores shared by both; ${bursts} bursts of ${burstMessages} messages (~${bodyBytes + 20} B payload) after a warm-up, servers yield every 10 publishes; 127.0.0.1`,
  ];
  if (only !== 'memory') lines.push(...(await fanoutLines()));
  if (only !== 'fanout') lines.push(await memoryLine());
  return lines;
}

async function fanoutLines(): Promise<string[]> {
  const lines: string[] = [];
  const results = new Map<string, FanoutResult>();
  for (const [kind, codec] of [
    ['hyp', 'json'],
    ['ws', 'json'],
    ['sio', 'json'],
    ['hyp', 'msgpack'],
    ['ws', 'msgpack'],
  ] as Array<[Kind, CodecKind]>) {
    results.set(`${kind}/${codec}`, await fanout(kind, codec));
  }
  const sio = results.get('sio/json')!;
  for (const codec of ['json', 'msgpack'] as CodecKind[]) {
    const hyp = results.get(`hyp/${codec}`)!;
    const naive = results.get(`ws/${codec}`)!;
    lines.push(
      `ws fan-out ${codec} (1 channel, ${subscribers} subscribers): hyp ${fmt(hyp.deliveriesPerSec)} deliveries/s, ${fmt(hyp.cpuUsPerDelivery, 2)} µs server CPU/delivery | naive ws loop ${fmt(naive.deliveriesPerSec)}/s, ${fmt(naive.cpuUsPerDelivery, 2)} µs | Socket.IO (json) ${fmt(sio.deliveriesPerSec)}/s, ${fmt(sio.cpuUsPerDelivery, 2)} µs | hyp vs naive ${ratio(hyp.deliveriesPerSec, naive.deliveriesPerSec)}, vs Socket.IO ${ratio(hyp.deliveriesPerSec, sio.deliveriesPerSec)}; CPU/delivery vs naive ${ratio(hyp.cpuUsPerDelivery, naive.cpuUsPerDelivery)}, vs Socket.IO ${ratio(hyp.cpuUsPerDelivery, sio.cpuUsPerDelivery)}`,
    );
  }
  return lines;
}

async function memoryLine(): Promise<string> {
  const mem = new Map<Kind, MemoryResult>();
  for (const kind of ['hyp', 'ws', 'sio'] as Kind[]) mem.set(kind, await idleMemory(kind));
  const h = mem.get('hyp')!;
  const w = mem.get('ws')!;
  const s = mem.get('sio')!;
  return `ws memory per idle connection (${idleConnections} conns, after GC): hyp ${fmt(h.heapPerConn / 1024, 1)} KiB heap+external, ${fmt(h.rssPerConn / 1024, 1)} KiB RSS | raw ws ${fmt(w.heapPerConn / 1024, 1)} KiB, ${fmt(w.rssPerConn / 1024, 1)} KiB RSS | Socket.IO ${fmt(s.heapPerConn / 1024, 1)} KiB, ${fmt(s.rssPerConn / 1024, 1)} KiB RSS | hyp vs raw ws ${ratio(h.heapPerConn, w.heapPerConn)} (heap), ${ratio(h.rssPerConn, w.rssPerConn)} (RSS); vs Socket.IO ${ratio(h.heapPerConn, s.heapPerConn)} (heap)`;
}

if (process.argv[2] === '--serve') {
  await serve(process.argv[3] as Kind, (process.argv[4] ?? 'json') as CodecKind);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const only = process.argv[2] === 'memory' || process.argv[2] === 'fanout' ? process.argv[2] : undefined;
  for (const line of await runWsBench(only)) console.log(line);
}
