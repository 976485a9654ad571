/**
 * ARCHITECTURE.md §1–§2, the socket hand-off, against the real supervisor:
 * listeners bound but not polled, the backlog that outlives every worker,
 * the systemd-style fd layout, workers that accept directly, and a
 * supervisor that never loads the application.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cli,
  collectLogLines,
  fixtureApp,
  isAlive,
  type LogLine,
  type Running,
  root,
  startSupervisor,
  until,
} from '../helpers/supervisor.js';

let sup: Running | undefined;
let held: { kill(): Promise<void> } | undefined;
afterEach(async () => {
  await held?.kill();
  held = undefined;
  await sup?.stop();
  sup = undefined;
});

interface Fds {
  pid: number;
  generation: number;
  LISTEN_FDS: string | null;
  LISTEN_FDNAMES: string | null;
  NODE_CHANNEL_FD: string | null;
  fds: Record<string, string>;
}

type HeldView = { name: string; port: number; fd: number };

/** The TCP sockets on `port` in `state` as `ss` sees them, with the pids that hold each. */
function sockets(port: number, state: 'listening' | 'established'): Array<{ recvQ: number; pids: number[] }> {
  const out = execFileSync('ss', ['-Htnp', 'state', state, `( sport = :${port} )`], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => ({
      // state is filtered, so the first column is Recv-Q (for a listener: connections not accepted yet)
      recvQ: Number(line.trim().split(/\s+/)[0]),
      pids: [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])),
    }));
}

/** Pids holding the other end of the Unix socket at `fd` of `pid` (`ss -x`). */
function unixPeerHolders(pid: number, fd: number): number[] {
  const lines = execFileSync('ss', ['-Hxp'], { encoding: 'utf8' }).split('\n');
  // u_str ESTAB 0 0 * <inode> * <peer inode> users:(("node",pid=…,fd=…))
  const parsed = lines.map((line) => {
    const cols = line.trim().split(/\s+/);
    return { inode: cols[5], peer: cols[7], line };
  });
  const mine = parsed.find((p) => p.line.includes(`pid=${pid},fd=${fd})`));
  if (!mine) return [];
  const other = parsed.find((p) => p.inode === mine.peer);
  return other ? [...other.line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])) : [];
}

/** Ask for `path` on fresh connections until `want` distinct workers answered (bounded). */
async function fromEachWorker(port: number, want: number, path = '/fds'): Promise<Fds[]> {
  const seen = new Map<number, Fds>();
  for (let i = 0; i < 200 && seen.size < want; i++) {
    const body = (await (
      await fetch(`http://127.0.0.1:${port}${path}`, { headers: { connection: 'close' } })
    ).json()) as Fds;
    seen.set(body.pid, body);
  }
  return [...seen.values()];
}

function heldListeners(s: Running): Promise<HeldView[]> {
  return s.status().then((st) => st.listeners as HeldView[]);
}

/** Write a whole HTTP/1.1 request on a new connection; resolves with everything the server sends until it closes. */
function rawRequest(port: number, path: string): { socket: Socket; answer: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
  const answer = new Promise<string>((resolve, reject) => {
    let got = '';
    socket.on('data', (d) => {
      got += d;
    });
    socket.on('end', () => resolve(got));
    socket.on('error', reject);
  });
  return { socket, answer };
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('contract §2: fds 3..3+n-1, LISTEN_FDS=n, LISTEN_FDNAMES from config, the IPC channel after them', () => {
  it("every worker's fds 3, 4, 5 are the supervisor's own held sockets in config order, the same ones after a rolling restart", async () => {
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 2,
      sets: ['tcp.alpha.addr=127.0.0.1:0', 'tcp.beta.addr=127.0.0.1:0'],
    });
    const listeners = await heldListeners(sup);
    expect(listeners.map((l) => l.name)).toEqual(['http', 'alpha', 'beta']);
    const supPid = sup.proc.pid!;
    const inode = (pid: number, fd: number) => readlinkSync(`/proc/${pid}/fd/${fd}`);
    const held = listeners.map((l) => inode(supPid, l.fd));
    for (const link of held) expect(link).toMatch(/^socket:\[\d+\]$/);

    const check = (workers: Fds[]) => {
      for (const w of workers) {
        expect(w.LISTEN_FDS).toBe('3');
        expect(w.LISTEN_FDNAMES).toBe('http:alpha:beta');
        expect([w.fds['3'], w.fds['4'], w.fds['5']]).toEqual(held);
        // the IPC channel sits right after the listeners: fd 6 is a socket whose peer the supervisor holds
        // (Node takes NODE_CHANNEL_FD out of the environment once it has opened the channel)
        expect(w.fds['6']).toMatch(/^socket:\[\d+\]$/);
        expect(held).not.toContain(w.fds['6']);
        expect(unixPeerHolders(w.pid, 6)).toEqual([supPid]);
      }
    };
    const first = await fromEachWorker(sup.httpPort, 2);
    expect(first.map((w) => w.generation)).toEqual([1, 1]);
    check(first);

    const roll = (await (await sup.admin('/restart?wait=1', { method: 'POST' })).json()) as { ok: boolean };
    expect(roll.ok).toBe(true);
    await sup.waitFor((s) => s.other_workers.length === 0, 'generation 1 gone');
    // A worker restart closes none of them: the supervisor still holds the very same sockets.
    expect((await heldListeners(sup)).map((l) => inode(supPid, l.fd))).toEqual(held);
    const second = await fromEachWorker(sup.httpPort, 2);
    expect(second.map((w) => w.generation)).toEqual([2, 2]);
    check(second);
    // and each TCP service is served through its fd
    for (const l of listeners.slice(1)) {
      const echoed = await new Promise<string>((resolve, reject) => {
        const s = connect(l.port, '127.0.0.1', () => s.end(`hi ${l.name}`));
        let got = '';
        s.on('data', (d) => {
          got += d;
        });
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
      expect(echoed).toBe(`hi ${l.name}`);
    }
  });
});

describe('contract §2: bound but not polled', () => {
  it('before the first worker: the HTTP port is held by the supervisor but not listening (a connect is refused); the first worker turns it to LISTEN', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    const gate = join(dir, 'gate');
    const preload = pathToFileURL(
      join(root, 'dist', 'test', 'fixtures', 'apps', 'hold-admin-listen.js'),
    ).href;
    const sets = [
      'server.addr=127.0.0.1:0',
      'admin.addr=127.0.0.1:0',
      `supervisor.pid_file=${join(dir, 'hyp.pid')}`,
      'supervisor.workers=1',
      'drain.delay=0s',
    ];
    const proc = spawn(
      process.execPath,
      ['--import', preload, cli, 'run', fixtureApp('contracts'), ...sets.flatMap((s) => ['--set', s])],
      {
        cwd: dir,
        env: { ...process.env, HYP_LOG_FORMAT: 'json', HYP_TEST_LISTEN_GATE: gate },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    held = {
      async kill() {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        await exited;
      },
    };
    const logs: LogLine[] = [];
    collectLogLines(proc.stdout!, logs);
    const http = await until(
      () => logs.find((l) => l.msg === 'holding listener' && l.listener === 'http'),
      'http listener held',
      20_000,
    );
    const port = Number(http.port);
    // held before launch: no worker exists yet
    expect(logs.some((l) => l.msg === 'worker spawned')).toBe(false);
    // bound: the supervisor's fd is a TCP socket on that port (its log line says which fd)
    expect(readlinkSync(`/proc/${proc.pid}/fd/${Number(http.fd)}`)).toMatch(/^socket:\[\d+\]$/);
    expect(await connectOutcome(port)).toBe('ECONNREFUSED');
    expect(sockets(port, 'listening')).toEqual([]);

    writeFileSync(gate, '');
    const worker = await until(
      () => logs.find((l) => l.msg === 'worker ready' && l.worker_pid !== undefined),
      'worker ready',
      20_000,
    );
    expect(await connectOutcome(port)).toBe('connected');
    const res = (await (await fetch(`http://127.0.0.1:${port}/api/worker`)).json()) as { pid: number };
    expect(res.pid).toBe(Number(worker.worker_pid));
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

describe('contract §2: the listen queue survives every worker exit', () => {
  it('with no worker running, new clients wait in the backlog, unaccepted (the supervisor never accepts), and the next worker serves each one', async () => {
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 1,
      // a long first backoff: the window with no worker at all
      sets: ['supervisor.backoff_initial=10s'],
    });
    const victim = (await sup.status()).workers[0]!.pid;
    const spawnedBefore = sup.logs.filter((l) => l.msg === 'worker spawned').length;
    process.kill(victim, 'SIGKILL');
    await sup.waitLog(
      (l) =>
        typeof l.msg === 'string' &&
        l.msg.startsWith('worker exited unexpectedly') &&
        l.worker_pid === victim,
      'crash seen',
    );
    await until(() => !isAlive(victim) || undefined, 'victim gone', 5000);
    const clients = [0, 1, 2].map(() => rawRequest(sup!.httpPort, '/api/worker'));
    for (const c of clients)
      await new Promise<void>((r) => (c.socket.connecting ? c.socket.once('connect', () => r()) : r()));
    // Three handshakes completed, nobody has accepted them: not the supervisor either.
    const queue = await until(() => {
      const [listener] = sockets(sup!.httpPort, 'listening');
      return listener && listener.recvQ === 3 ? listener : undefined;
    }, 'three connections in the accept queue');
    expect(queue.pids).toContain(sup.proc.pid);
    // the server side of each connection exists in the kernel only: no process holds it
    const pending = sockets(sup.httpPort, 'established');
    expect(pending).toHaveLength(3);
    for (const p of pending) expect(p.pids).toEqual([]);
    // still the window without a worker (backoff_initial 10s)
    expect(sup.logs.filter((l) => l.msg === 'worker spawned')).toHaveLength(spawnedBefore);

    const answers = await Promise.all(clients.map((c) => c.answer));
    const next = (await sup.status()).workers[0]!.pid;
    expect(next).not.toBe(victim);
    for (const a of answers) {
      expect(a).toMatch(/^HTTP\/1\.1 200 /);
      expect(a).toContain(`{"pid":${next},"generation":1}`);
    }
  });
});

describe('contract §2: no per-connection hop through the supervisor', () => {
  it("an open client connection is a socket of the worker's only; the supervisor holds no established socket on the port", async () => {
    sup = await startSupervisor({ app: fixtureApp('contracts'), workers: 2 });
    const workers = (await sup.status()).workers.map((w) => w.pid);
    const open = [0, 1, 2, 3].map(() => connect(sup!.httpPort, '127.0.0.1'));
    await Promise.all(open.map((s) => new Promise((r) => s.once('connect', r))));
    const established = await until(() => {
      const found = sockets(sup!.httpPort, 'established');
      return found.length === 4 && found.every((s) => s.pids.length > 0) ? found : undefined;
    }, 'the four connections accepted');
    for (const s of established) {
      expect(s.pids).toHaveLength(1);
      expect(workers).toContain(s.pids[0]);
      expect(s.pids).not.toContain(sup.proc.pid);
    }
    for (const s of open) s.destroy();
  });
});

describe('contract §1: the supervisor never imports application code', () => {
  it('the app module is loaded by the workers only, once each, across a rolling restart and a crash', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-loaded-'));
    const loaded = join(dir, 'loaded');
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 2,
      sets: ['supervisor.backoff_initial=100ms'],
      env: { HYP_TEST_LOADED_LOG: loaded },
    });
    const victim = (await sup.status()).workers[0]!.pid;
    process.kill(victim, 'SIGKILL');
    await sup.waitFor(
      (s) => s.workers.length === 2 && s.workers.every((w) => w.state === 'ready' && w.pid !== victim),
      'replaced',
    );
    expect(
      ((await (await sup.admin('/restart?wait=1', { method: 'POST' })).json()) as { ok: boolean }).ok,
    ).toBe(true);
    const spawned = sup.logs.filter((l) => l.msg === 'worker spawned').map((l) => Number(l.worker_pid));
    expect(spawned).toHaveLength(5);
    const loaders = readFileSync(loaded, 'utf8').trim().split('\n').map(Number);
    expect(loaders).not.toContain(sup.proc.pid);
    expect([...loaders].sort()).toEqual([...spawned].sort());
    expect(existsSync(loaded)).toBe(true);
  });
});
