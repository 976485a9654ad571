/**
 * TCP service benchmark: hyp's `TcpService` echo against a raw `node:net`
 * echo server, measured in the same run in alternating slices, reported as ratios,
 * with the server's CPU time per message / connection (robust to noise).
 *
 * - ping-pong: 64 connections, each sends 1 KiB and waits for the whole echo
 *   before the next message → messages/s and p50/p99 round-trip latency;
 * - bulk: 64 connections stream 16 KiB writes and read the echo back → MiB/s;
 * - accept rate: 16 lanes of connect → 1-byte echo → close → connections/s.
 *
 * Each server runs alone in a child process (`node dist/test/bench/tcp.js
 * --serve hyp|net`) so it does not share an event loop with the load
 * generator; the two processes share the machine's cores, which the setup
 * line reports. Every loop is bounded in time.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

type Kind = 'hyp' | 'net';

const connections = 64;
const messageBytes = 1024;
const pingPongMs = 8_000;
const bulkMs = 4_000;
const acceptMs = 4_000;
const slices = 4;
const acceptLanes = 16;

// ---- server side (child process) ---------------------------------------------

async function serve(kind: Kind): Promise<void> {
  let port: number;
  if (kind === 'net') {
    const server = createServer((socket) => {
      socket.setNoDelay(true);
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  } else {
    const [{ TcpService }, { Registry }, { pino }, { Value }, { TcpServiceSchema }] = await Promise.all([
      import('../../apps/server/tcp/server.js'),
      import('prom-client'),
      import('pino'),
      import('@sinclair/typebox/value'),
      import('../../supervisor/config/schema.js'),
    ]);
    const config = Value.Default(TcpServiceSchema, {
      addr: '127.0.0.1:0',
      max_connections: 100_000,
    }) as never;
    const service = new TcpService({
      name: 'echo',
      config,
      handler: async (conn) => {
        for await (const chunk of conn) await conn.write(chunk);
      },
      options: { onError: () => {} },
      log: pino({ level: 'silent' }),
      registry: new Registry(),
    });
    await service.listen();
    port = service.address().port;
  }
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  // Each line on stdin asks for the CPU time used so far (µs, user + system).
  process.stdin.on('data', () => {
    const { user, system } = process.cpuUsage();
    process.stdout.write(`${user + system}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
}

// ---- load generator ------------------------------------------------------------

interface ServerChild {
  kind: Kind;
  child: ChildProcess;
  port: number;
}

async function startServer(kind: Kind): Promise<ServerChild> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', kind], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { kind, child, port: (JSON.parse(line.toString()) as { port: number }).port };
}

/** CPU time the server process has used so far, in µs. */
async function serverCpu(server: ServerChild): Promise<number> {
  server.child.stdin!.write('cpu\n');
  const [line] = (await once(server.child.stdout!, 'data')) as [Buffer];
  return Number(line.toString().trim());
}

async function stopServer(server: ServerChild): Promise<void> {
  server.child.stdin!.end();
  if (server.child.exitCode === null) await once(server.child, 'exit');
}

async function open(port: number): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', noDelay: true });
  await once(socket, 'connect');
  return socket;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface PingPong {
  messages: number;
  latencies: number[];
  elapsedMs: number;
}

async function pingPong(port: number, durationMs: number): Promise<PingPong> {
  const sockets = await Promise.all(Array.from({ length: connections }, () => open(port)));
  const message = Buffer.alloc(messageBytes, 0x6b);
  const latencies: number[] = [];
  const end = performance.now() + durationMs;
  const start = performance.now();
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          let received = 0;
          let sentAt = 0;
          const send = () => {
            if (performance.now() >= end) {
              resolve();
              return;
            }
            received = 0;
            sentAt = performance.now();
            socket.write(message);
          };
          socket.on('data', (chunk: Buffer) => {
            received += chunk.length;
            if (received >= messageBytes) {
              latencies.push(performance.now() - sentAt);
              send();
            }
          });
          socket.on('error', () => resolve());
          send();
        }),
    ),
  );
  const elapsedMs = performance.now() - start;
  for (const s of sockets) s.destroy();
  return { messages: latencies.length, latencies, elapsedMs };
}

async function bulk(port: number, durationMs: number): Promise<{ mib: number; elapsedMs: number }> {
  const sockets = await Promise.all(Array.from({ length: connections }, () => open(port)));
  const chunk = Buffer.alloc(16 * 1024, 0x62);
  let echoed = 0;
  const end = performance.now() + durationMs;
  const start = performance.now();
  await Promise.all(
    sockets.map(async (socket) => {
      socket.on('data', (data: Buffer) => {
        echoed += data.length;
      });
      socket.on('error', () => {});
      while (performance.now() < end && !socket.destroyed) {
        if (!socket.write(chunk)) {
          await new Promise<void>((resolve) => {
            const go = () => {
              socket.off('drain', go).off('close', go);
              resolve();
            };
            socket.on('drain', go).on('close', go);
          });
        }
      }
    }),
  );
  const elapsedMs = performance.now() - start;
  for (const s of sockets) s.destroy();
  return { mib: echoed / 1024 / 1024, elapsedMs };
}

async function acceptRate(
  port: number,
  durationMs: number,
): Promise<{ accepted: number; elapsedMs: number }> {
  let done = 0;
  const end = performance.now() + durationMs;
  const start = performance.now();
  const lane = async () => {
    while (performance.now() < end) {
      const socket = await open(port);
      socket.write('x');
      await once(socket, 'data');
      socket.destroy();
      done++;
    }
  };
  await Promise.all(Array.from({ length: acceptLanes }, lane));
  return { accepted: done, elapsedMs: performance.now() - start };
}

interface Totals {
  messages: number;
  latencies: number[];
  pingPongMs: number;
  pingPongCpuUs: number;
  bulkMiB: number;
  bulkMs: number;
  accepted: number;
  acceptMs: number;
  acceptCpuUs: number;
}

const emptyTotals = (): Totals => ({
  messages: 0,
  latencies: [],
  pingPongMs: 0,
  pingPongCpuUs: 0,
  bulkMiB: 0,
  bulkMs: 0,
  accepted: 0,
  acceptMs: 0,
  acceptCpuUs: 0,
});

/**
 * Alternate short slices between the two servers (net, hyp, hyp, net, …) so
 * drifting load from other processes on the shared cores hits both alike.
 */
async function measureBoth(servers: ServerChild[], slices: number): Promise<Map<Kind, Totals>> {
  const totals = new Map<Kind, Totals>(servers.map((s) => [s.kind, emptyTotals()]));
  for (let i = 0; i < slices; i++) {
    const order = i % 2 === 0 ? servers : [...servers].reverse();
    for (const server of order) {
      const t = totals.get(server.kind)!;
      let cpu = await serverCpu(server);
      const pp = await pingPong(server.port, pingPongMs / slices);
      t.pingPongCpuUs += (await serverCpu(server)) - cpu;
      t.messages += pp.messages;
      t.pingPongMs += pp.elapsedMs;
      for (const l of pp.latencies) t.latencies.push(l);
      const b = await bulk(server.port, bulkMs / slices);
      t.bulkMiB += b.mib;
      t.bulkMs += b.elapsedMs;
      cpu = await serverCpu(server);
      const a = await acceptRate(server.port, acceptMs / slices);
      t.acceptCpuUs += (await serverCpu(server)) - cpu;
      t.accepted += a.accepted;
      t.acceptMs += a.elapsedMs;
    }
  }
  return totals;
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export async function runTcpBench(): Promise<string[]> {
  const servers = [await startServer('net'), await startServer('hyp')];
  let totals: Map<Kind, Totals>;
  try {
    await measureBoth(servers, 1); // warm-up: JIT, socket buffers
    totals = await measureBoth(servers, slices);
  } finally {
    await Promise.all(servers.map(stopServer));
  }
  const figures = (kind: Kind) => {
    const t = totals.get(kind)!;
    const sorted = Float64Array.from(t.latencies).sort();
    return {
      msgPerSec: (t.messages / t.pingPongMs) * 1000,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      cpuPerMsg: t.pingPongCpuUs / t.messages,
      mibPerSec: t.bulkMiB / (t.bulkMs / 1000),
      acceptPerSec: (t.accepted / t.acceptMs) * 1000,
      cpuPerConn: t.acceptCpuUs / t.accepted,
    };
  };
  const hyp = figures('hyp');
  const net = figures('net');
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  return [
    `tcp setup: hyp TcpService and a raw node:net echo (socket.pipe(socket)), each alone in a child process (node ${process.version}); load generator in this process; ${availableParallelism()} cores shared by all three (and whatever else runs); ${connections} connections over 127.0.0.1; ${slices} alternating slices per figure`,
    `tcp echo ping-pong (${messageBytes} B, ${connections} conns): hyp ${fmt(hyp.msgPerSec)} msg/s, p50 ${fmt(hyp.p50, 2)} ms, p99 ${fmt(hyp.p99, 2)} ms, ${fmt(hyp.cpuPerMsg, 1)} µs server CPU/msg | net ${fmt(net.msgPerSec)} msg/s, p50 ${fmt(net.p50, 2)} ms, p99 ${fmt(net.p99, 2)} ms, ${fmt(net.cpuPerMsg, 1)} µs/msg | throughput ${ratio(hyp.msgPerSec, net.msgPerSec)}, p99 ${ratio(hyp.p99, net.p99)}, CPU/msg ${ratio(hyp.cpuPerMsg, net.cpuPerMsg)}`,
    `tcp echo bulk (16 KiB writes, ${connections} conns): hyp ${fmt(hyp.mibPerSec, 1)} MiB/s | net ${fmt(net.mibPerSec, 1)} MiB/s | ratio ${ratio(hyp.mibPerSec, net.mibPerSec)}`,
    `tcp accept rate (${acceptLanes} lanes, connect + 1-byte echo + close): hyp ${fmt(hyp.acceptPerSec)} conn/s, ${fmt(hyp.cpuPerConn, 1)} µs server CPU/conn | net ${fmt(net.acceptPerSec)} conn/s, ${fmt(net.cpuPerConn, 1)} µs/conn | ratio ${ratio(hyp.acceptPerSec, net.acceptPerSec)}, CPU/conn ${ratio(hyp.cpuPerConn, net.cpuPerConn)}`,
  ];
}

if (process.argv[2] === '--serve') {
  await serve(process.argv[3] === 'net' ? 'net' : 'hyp');
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const line of await runTcpBench()) console.log(line);
}
