/**
 * Shared fixtures for the TCP service specs: config sections with schema
 * defaults, a started service on 127.0.0.1:0, small socket clients.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { expect } from 'vitest';
import { TcpService, type TcpServiceInit } from '../../../../apps/server/tcp/server.js';
import type { TcpHandler, TcpServiceOptions } from '../../../../apps/server/tcp/types.js';
import { type TcpServiceConfig, TcpServiceSchema } from '../../../../supervisor/config/schema.js';

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

export const silentLog = pino({ level: 'silent' });

/** A `tcp.<name>` section as the config loader would resolve it. */
export function tcpConfig(partial: DeepPartial<TcpServiceConfig> = {}): TcpServiceConfig {
  return Value.Default(
    TcpServiceSchema,
    Value.Clone({ addr: '127.0.0.1:0', ...partial }),
  ) as TcpServiceConfig;
}

export const echo: TcpHandler = async (conn) => {
  for await (const chunk of conn) await conn.write(chunk);
};

export interface Started<S extends object> {
  service: TcpService<S>;
  port: number;
  registry: Registry;
}

export async function startService<S extends object = Record<string, unknown>>(
  handler: TcpHandler<S>,
  config: DeepPartial<TcpServiceConfig> = {},
  options: TcpServiceOptions<S> = {},
  extra: Partial<TcpServiceInit<S>> = {},
): Promise<Started<S>> {
  const registry = new Registry();
  const service = new TcpService<S>({
    name: 'echo',
    config: tcpConfig(config),
    handler,
    options,
    log: silentLog,
    registry,
    ...extra,
  });
  await service.listen();
  return { service, port: service.address().port, registry };
}

export async function dial(port: number): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1' });
  await once(socket, 'connect');
  return socket;
}

/** Read from `socket` until `bytes` bytes arrived or it ended. */
export async function readBytes(socket: Socket, bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      parts.push(chunk);
      got += chunk.length;
      if (got >= bytes) finish();
    };
    const finish = () => {
      socket.off('data', onData);
      socket.off('end', finish);
      socket.off('close', finish);
      socket.off('error', reject);
      resolve(Buffer.concat(parts));
    };
    socket.on('data', onData);
    socket.once('end', finish);
    socket.once('close', finish);
    socket.once('error', reject);
  });
}

/** Resolves when the peer closed (end or close), with whether any data came first. */
export async function closedByPeer(socket: Socket): Promise<{ data: Buffer }> {
  const parts: Buffer[] = [];
  socket.on('data', (c: Buffer) => parts.push(c));
  socket.on('error', () => {});
  if (!socket.destroyed) await new Promise((resolve) => socket.once('close', resolve));
  return { data: Buffer.concat(parts) };
}

export async function until(check: () => boolean, what: string, limitMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return match?.value ?? 0;
}

/** A fresh temp folder holding a self-signed EC certificate for 127.0.0.1: `server.pem` and `server.key`. */
export function selfSignedCertDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'server.key',
      '-out',
      'server.pem',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { cwd: dir, stdio: 'pipe' },
  );
  return dir;
}

const tracked: TcpService<object>[] = [];

/** Close `service` at `closeTracked()` (a spec file's afterEach). */
export function track<S extends object>(service: TcpService<S>): TcpService<S> {
  tracked.push(service as TcpService<object>);
  return service;
}

/** `startService`, tracked for `closeTracked()`. */
export async function start(...args: Parameters<typeof startService>): ReturnType<typeof startService> {
  const started = await startService(...args);
  track(started.service);
  return started;
}

export async function closeTracked(): Promise<void> {
  await Promise.all(tracked.splice(0).map((s) => s.close()));
}

/** A parsed log line of the TCP service's logger (the fields the specs read). */
export interface LogLine {
  level: number;
  msg: string;
  code?: string;
  errno?: string;
  error_code?: string;
  closed_by?: string;
  remote?: string;
  err?: { code?: string; stack?: string; message?: string };
}

export const DEBUG = 20;
export const WARN = 40;

/** A debug-level logger whose lines land in `lines`, parsed. */
export function capturedLog(): { log: ReturnType<typeof pino>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

/** Whether `npm run build` has produced dist/ (the network-namespace fixtures run it with plain node). */
export const builtDist = existsSync(
  fileURLToPath(new URL('../../../../dist/apps/server/tcp/server.js', import.meta.url)),
);

/** Whether a network namespace of its own can be made here: root, `unshare`, `ip`, `iptables` and `ss`. */
export function isolatedNetwork(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && iptables -L -n && ss -tn'], {
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
}

/** What `fixtures/peer-vanished.mjs` reports. */
export interface VanishedOutcome {
  open: number;
  /** The accepted socket's error code (the kernel's verdict). */
  socketError?: string;
  /** What onError received. */
  errors: { code?: string; message: string }[];
  /** The service's log lines about the handler (`HYP_E_TCP_HANDLER`) or at warn and above. */
  lines: LogLine[];
  peerGone: number;
  errorsTotal: number;
  /** Kernel timers seen on the service's socket while it waited (`ss -o`): `on` (retransmission), `keepalive`, … */
  timers: string[];
}

/**
 * Run `fixtures/peer-vanished.mjs <args>` (built dist/) in a network
 * namespace of its own, after `sysctl -w` of `sysctls` there, and parse
 * what it printed.
 */
export function vanishInIsolatedNetwork(args: string[], sysctls: Record<string, number>): VanishedOutcome {
  const fixture = fileURLToPath(new URL('./fixtures/peer-vanished.mjs', import.meta.url));
  const settings = Object.entries(sysctls).map(([key, value]) => `${key}=${value}`);
  const script = `ip link set lo up && sysctl -qw ${settings.join(' ')} && exec "$@"`;
  const out = execFileSync('unshare', ['-n', 'sh', '-c', script, 'sh', process.execPath, fixture, ...args], {
    encoding: 'utf8',
    timeout: 90_000,
  });
  return JSON.parse(out) as VanishedOutcome;
}

/**
 * A vanished peer's ETIMEDOUT, handled quietly: the connection closed, the
 * kernel's own verdict on the socket (not a faked errno), nothing to onError
 * or hyp_tcp_errors_total, one count in hyp_tcp_handler_peer_gone_total and
 * one debug line naming it, without a stack.
 */
export function expectVanishedQuietly(outcome: VanishedOutcome): void {
  expect(outcome.open).toBe(0);
  expect(outcome.socketError).toBe('ETIMEDOUT');
  expect(outcome.errors).toEqual([]);
  expect(outcome.errorsTotal).toBe(0);
  expect(outcome.peerGone).toBe(1);
  expect(outcome.lines).toHaveLength(1);
  expect(outcome.lines[0]).toMatchObject({
    level: DEBUG,
    errno: 'ETIMEDOUT',
    error_code: 'HYP_E_TCP_CLOSED',
  });
  expect(outcome.lines[0]).not.toHaveProperty('err');
  expect(outcome.lines[0]!.msg).toMatch(/\(the peer stopped answering on the connection: ETIMEDOUT\)$/);
}

/**
 * The kernel's keep-alive timers on the service's side of `port`'s
 * connections, in ms left (`ss -tno`). ss writes `546min`, `1min29sec`,
 * `29sec`, `5.250ms` (5.25 s) or `692ms`.
 */
export function keepAliveTimersMs(port: number): number[] {
  const out = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`], {
    encoding: 'utf8',
  });
  return [...out.matchAll(/timer:\(keepalive,(?:(\d+)min)?(?:(\d+)sec)?(?:(\d+)\.)?(?:(\d+)ms)?,\d+\)/g)].map(
    ([, min = 0, sec = 0, secDot = 0, ms = 0]) =>
      Number(min) * 60_000 + (Number(sec) + Number(secDot)) * 1000 + Number(ms),
  );
}
