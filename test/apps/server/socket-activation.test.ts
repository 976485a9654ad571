/**
 * A worker run without the supervisor under systemd socket activation
 * (ARCHITECTURE §1: "or a systemd socket unit"), with systemd's own
 * `systemd-socket-activate` as the peer: it listens, and on the first
 * connection execs the worker with LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID
 * set and no IPC channel. The worker must serve those sockets, not bind
 * its configured addresses.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/ports.js';
import { fixtureApp, type LogLine, root, until } from '../../helpers/supervisor.js';

const worker = join(root, 'dist', 'apps', 'server', 'worker.js');
const activate = spawnSync('systemd-socket-activate', ['--version']).status === 0;

interface Run {
  proc: ChildProcess;
  logs: LogLine[];
  stderr: () => string;
  exited: Promise<number | null>;
}

function run(command: string, args: string[], env: Record<string, string> = {}): Run {
  const proc = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let out = '';
  let err = '';
  proc.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line.startsWith('{')) logs.push(JSON.parse(line) as LogLine);
    }
  });
  proc.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, logs, stderr: () => err, exited };
}

/** `systemd-socket-activate` listening on `ports` (named `names`), execing the worker with `env`. */
function activated(ports: number[], names: string[], env: Record<string, string>): Run {
  const args = ports.flatMap((p) => ['-l', `127.0.0.1:${p}`]);
  if (names.length > 0) args.push(`--fdname=${names.join(':')}`);
  // It passes the child only the variables named with -E (and its LISTEN_* ones).
  for (const [k, v] of Object.entries({ HYP_LOG_FORMAT: 'json', ...env })) args.push('-E', `${k}=${v}`);
  return run('systemd-socket-activate', [...args, process.execPath, worker, fixtureApp('config-echo')]);
}

/** Until the activator listens on every port (it says so on stderr, one line per socket). */
async function listening(r: Run, ports: number[]): Promise<void> {
  await until(
    () => ports.every((p) => r.stderr().includes(`Listening on 127.0.0.1:${p} `)),
    'activator listening',
  );
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(20_000) });
  return { status: res.status, body: await res.text() };
}

function echo(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    let got = '';
    socket.setEncoding('utf8');
    socket.setTimeout(20_000, () => socket.destroy(new Error('no echo within 20 s')));
    socket.on('data', (d: string) => {
      got += d;
      if (got.length >= text.length) socket.end();
    });
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
  });
}

let running: Run | undefined;
afterEach(async () => {
  if (running && running.proc.exitCode === null) {
    running.proc.kill('SIGKILL');
    await running.exited;
  }
  running = undefined;
});

describe.skipIf(!activate)('standalone worker under systemd socket activation', () => {
  it('serves the socket it was handed (named http), not server.addr', async () => {
    const [port, own] = [await freePort(), await freePort()];
    running = activated([port], ['http'], { HYP_SERVER_ADDR: `127.0.0.1:${own}` });
    await listening(running, [port]);
    // The first connection is what makes systemd-socket-activate exec the worker.
    const answer = await get(port, '/config');
    expect(answer.status).toBe(200);
    const { pid, config } = JSON.parse(answer.body) as { pid: number; config: { server: { addr: string } } };
    expect(pid).toBe(running.proc.pid);
    expect(config.server.addr).toBe(`127.0.0.1:${own}`);
    const serving = await until(
      () => running!.logs.find((l) => l.msg === 'http listener serving'),
      'serving',
    );
    expect(serving.port).toBe(port);
    // Its own address was never bound.
    await expect(get(own, '/config')).rejects.toThrow();
  });

  it('one socket with no name of a listener (systemd names it after its unit) is the HTTP listener', async () => {
    const port = await freePort();
    running = activated([port], ['web.socket'], { HYP_SERVER_ADDR: '127.0.0.1:0' });
    await listening(running, [port]);
    expect((await get(port, '/config')).status).toBe(200);
  });

  it('two sockets, named http and a TCP service: each served by its listener', async () => {
    const [http, tcp] = [await freePort(), await freePort()];
    running = activated([http, tcp], ['http', 'echo'], {
      HYP_SERVER_ADDR: '127.0.0.1:0',
      HYP_TCP_ECHO_ADDR: '127.0.0.1:0',
    });
    await listening(running, [http, tcp]);
    expect((await get(http, '/config')).status).toBe(200);
    expect(await echo(tcp, 'hello over an activated socket')).toBe('hello over an activated socket');
  });

  it('a socket named after no listener: HYP_E_LISTEN_FDS naming it and the listeners, exit 2', async () => {
    const [a, b] = [await freePort(), await freePort()];
    running = activated([a, b], ['http', 'nope'], { HYP_SERVER_ADDR: '127.0.0.1:0' });
    await listening(running, [a, b]);
    // Wakes the activator; the worker refuses to start, so the connection is closed unanswered.
    await expect(get(a, '/config')).rejects.toThrow();
    expect(await running.exited).toBe(2);
    expect(running.stderr()).toContain(
      'hyp: HYP_E_LISTEN_FDS: socket activation: socket 2 of 2 is named "nope", which is no listener of this worker; the names are: http',
    );
  });
});

describe('standalone worker with LISTEN_FDS', () => {
  it('LISTEN_PID naming another process: the variables are not its own; it warns and binds server.addr', async () => {
    const own = await freePort();
    running = run(process.execPath, [worker, fixtureApp('config-echo')], {
      HYP_LOG_FORMAT: 'json',
      HYP_SERVER_ADDR: `127.0.0.1:${own}`,
      LISTEN_FDS: '1',
      LISTEN_FDNAMES: 'http',
      LISTEN_PID: '1',
    });
    await until(() => running!.logs.find((l) => l.msg === 'worker ready'), 'ready');
    expect((await get(own, '/config')).status).toBe(200);
    expect(running.logs.find((l) => l.level === 'warn')?.msg).toMatch(/^LISTEN_PID is 1, not this process/);
  });

  it('LISTEN_FDS that is not a number: HYP_E_LISTEN_FDS, exit 2', () => {
    const out = spawnSync(process.execPath, [worker, fixtureApp('config-echo')], {
      env: { ...process.env, HYP_SERVER_ADDR: '127.0.0.1:0', LISTEN_FDS: 'two' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.status).toBe(2);
    expect(out.stderr).toContain(
      'hyp: HYP_E_LISTEN_FDS: socket activation: LISTEN_FDS is "two", not a number of sockets',
    );
  });
});
