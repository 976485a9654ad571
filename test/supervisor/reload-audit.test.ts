/**
 * What a SIGHUP reload does with each config section, on a real supervisor
 * started with `--config FILE`: a refused config is not applied (the SIGHUP
 * still rolls, with the running config, as the signal contract says),
 * keys fixed for the pod's life are named and kept, the rest reaches the
 * next generation (and only once that generation is up), the environment
 * and `--set` still win, and a SIGHUP during a pod drain changes nothing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2Connect } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../supervisor/config/schema.js';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { cli, collectLogLines, fixtureApp, type LogLine, type Status, until } from '../helpers/supervisor.js';
import { tlsVisit } from '../helpers/tls-visit.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});

const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

interface Hyp {
  child: ChildProcess;
  dir: string;
  file: string;
  logs: LogLine[];
  httpPort: number;
  adminPort: number;
  admin(path: string): Promise<Response>;
  status(): Promise<Status>;
  waitLog(pred: (l: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  /** Until generation `gen` has `count` ready workers and no other worker is left. */
  settled(gen: number, count: number): Promise<Status>;
  /** The config the worker answering GET /config was started with. */
  workerConfig(): Promise<{ pid: number; generation: number; config: Config }>;
  exited: Promise<number | null>;
}

/** The YAML of a config file: loopback ephemeral listeners, a PID file in `dir`, then `extra`. */
function yaml(dir: string, extra = '', workers = 2): string {
  return [
    'server:',
    '  addr: 127.0.0.1:0',
    'admin:',
    '  addr: 127.0.0.1:0',
    'supervisor:',
    `  workers: ${workers}`,
    `  pid_file: ${join(dir, 'hyp.pid')}`,
    'drain:',
    '  delay: 0s',
    '  timeout: 5s',
    extra,
  ].join('\n');
}

async function startHyp(
  opts: {
    app?: string;
    config?: (dir: string) => string;
    env?: Record<string, string>;
    sets?: string[];
    /** Start without `--config`: the file is the implicit ./hyp.yaml of the working directory. */
    implicit?: boolean;
  } = {},
): Promise<Hyp> {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-reload-'));
  const file = join(dir, 'hyp.yaml');
  writeFileSync(file, (opts.config ?? yaml)(dir));
  const args = [
    cli,
    'run',
    opts.app ?? fixtureApp('config-echo'),
    ...(opts.implicit ? [] : ['--config', file]),
  ];
  for (const s of opts.sets ?? []) args.push('--set', s);
  const child = spawn(process.execPath, args, {
    cwd: dir,
    env: { ...process.env, HYP_LOG_FORMAT: 'json', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  const logs: LogLine[] = [];
  collectLogLines(child.stdout!, logs);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitLog = (pred: (l: LogLine) => boolean, what: string, timeoutMs = 30_000) =>
    until(() => logs.find(pred), what, timeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}; stderr: ${stderr}; supervisor: ${JSON.stringify(logs.slice(-30))}`);
    });
  const adminPort = Number((await waitLog((l) => l.msg === 'admin server listening', 'admin')).port);
  const httpPort = Number(
    (await waitLog((l) => l.msg === 'holding listener' && l.listener === 'http', 'http listener')).port,
  );
  const admin = (path: string) => fetch(`http://127.0.0.1:${adminPort}${path}`);
  const status = async () => (await (await admin('/status')).json()) as Status;
  const settled = (gen: number, count: number) =>
    until(
      async () => {
        const s = await status();
        const done =
          s.generation === gen &&
          s.workers.length === count &&
          s.workers.every((w) => w.state === 'ready') &&
          s.other_workers.length === 0;
        return done ? s : undefined;
      },
      `generation ${gen} with ${count} ready workers and no other`,
      40_000,
    );
  const workerConfig = async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/config`, { headers: { connection: 'close' } });
    return (await res.json()) as { pid: number; generation: number; config: Config };
  };
  return {
    child,
    dir,
    file,
    logs,
    httpPort,
    adminPort,
    admin,
    status,
    waitLog,
    settled,
    workerConfig,
    exited,
  };
}

/** Until generation 1 has 2 ready workers again, none of them `pid`. */
const replaced = (hyp: Hyp, pid: number, generation = 1) =>
  until(
    async () => {
      const s = await hyp.status();
      const back = s.workers.length === 2 && s.workers.every((w) => w.state === 'ready' && w.pid !== pid);
      return back && s.generation === generation ? s : undefined;
    },
    `worker ${pid} replaced by a ready worker of generation ${generation}`,
    30_000,
  );

const rolls = (hyp: Hyp) => hyp.logs.filter((l) => l.msg === 'rolling restart').map((l) => l.to);

async function metric(hyp: Hyp, name: string): Promise<number> {
  const text = await (await hyp.admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}

describe('SIGHUP reload, section by section', () => {
  it('an invalid config is refused with the key path and counted; the roll keeps the running config, /ready stays 200', async () => {
    const hyp = await startHyp();
    await hyp.settled(1, 2);
    writeFileSync(hyp.file, yaml(hyp.dir).replace('delay: 0s', 'delay: soon'));
    hyp.child.kill('SIGHUP');
    const refused = await hyp.waitLog((l) => String(l.msg).startsWith('config reload failed'), 'refusal');
    expect(refused.level).toBe('error');
    expect(refused.msg).toContain('drain.delay');
    expect(refused.msg).toContain('"soon"');
    expect(await metric(hyp, 'hyp_supervisor_config_reload_failures_total')).toBe(1);
    expect((await hyp.admin('/ready')).status).toBe(200);
    // The SIGHUP's roll runs with the running config.
    await hyp.settled(2, 2);
    expect(rolls(hyp)).toEqual([2]);
    expect((await hyp.workerConfig()).config.drain.delay).toBe('0s');
  });

  it('a config file deleted before the SIGHUP is refused the same way', async () => {
    const hyp = await startHyp();
    await hyp.settled(1, 2);
    rmSync(hyp.file);
    hyp.child.kill('SIGHUP');
    const refused = await hyp.waitLog((l) => String(l.msg).startsWith('config reload failed'), 'refusal');
    expect(refused.msg).toContain('HYP_E_CONFIG_FILE');
    expect(refused.msg).toContain(hyp.file);
    await hyp.settled(2, 2);
    expect(rolls(hyp)).toEqual([2]);
    expect((await hyp.admin('/ready')).status).toBe(200);
  });

  it('an implicit ./hyp.yaml deleted before the SIGHUP is refused too, not replaced by the defaults', async () => {
    const hyp = await startHyp({ implicit: true });
    await hyp.settled(1, 2);
    const started = (await hyp.workerConfig()).config;
    rmSync(hyp.file);
    hyp.child.kill('SIGHUP');
    const refused = await hyp.waitLog((l) => String(l.msg).startsWith('config reload failed'), 'refusal');
    expect(refused.msg).toContain('HYP_E_CONFIG_FILE');
    await hyp.settled(2, 2);
    const now = (await hyp.workerConfig()).config;
    expect(now.drain).toEqual(started.drain);
    expect(now.supervisor.workers).toBe(2);
  });

  it('TLS turned on with a missing certificate file is refused before any worker starts; crashed workers are still replaced', async () => {
    const hyp = await startHyp();
    await hyp.settled(1, 2);
    const missing = join(hyp.dir, 'missing.crt');
    writeFileSync(
      hyp.file,
      yaml(hyp.dir).replace(
        'server:\n',
        `server:\n  tls:\n    enabled: true\n    cert_file: ${missing}\n    key_file: ${pki.serverKey}\n`,
      ),
    );
    hyp.child.kill('SIGHUP');
    const refused = await hyp.waitLog((l) => String(l.msg).startsWith('config reload failed'), 'refusal');
    expect(refused.msg).toContain('server.tls.cert_file');
    expect(refused.msg).toContain(missing);
    await hyp.settled(2, 2);
    expect((await hyp.workerConfig()).config.server.tls.enabled).toBe(false);
    // The running config is the one a crashed worker comes back with.
    const victim = (await hyp.status()).workers[0]!;
    process.kill(victim.pid, 'SIGKILL');
    await replaced(hyp, victim.pid, 2);
    expect((await hyp.admin('/ready')).status).toBe(200);
  });

  it('a config whose generation fails to start is not adopted: crashed workers come back with the running one', async () => {
    const hyp = await startHyp();
    await hyp.settled(1, 2);
    writeFileSync(
      hyp.file,
      yaml(hyp.dir, 'websocket:\n  allowed_origins: ["https://refuse.test"]\n').replace(
        'timeout: 5s',
        'timeout: 7s',
      ),
    );
    hyp.child.kill('SIGHUP');
    await hyp.waitLog(
      (l) =>
        String(l.msg).includes('HYP_E_GENERATION_FAILED') || String(l.msg).includes('failed to become ready'),
      'roll failed',
    );
    expect(((await (await hyp.admin('/drain')).json()) as { timeout: string }).timeout).toBe('5s');
    const victim = (await hyp.status()).workers[0]!;
    process.kill(victim.pid, 'SIGKILL');
    await replaced(hyp, victim.pid);
    const seen = await hyp.workerConfig();
    expect(seen.config.websocket.allowed_origins).toEqual([]);
  });

  it('listener addresses, admin.addr and added TCP services are named and kept; the other TCP settings apply', async () => {
    const tcp = (idle: string, extra = '') =>
      `tcp:\n  echo:\n    addr: 127.0.0.1:0\n    idle_timeout: ${idle}\n${extra}`;
    const hyp = await startHyp({ config: (dir) => yaml(dir, tcp('5m')) });
    await hyp.settled(1, 2);
    const echoPort = Number(
      (await hyp.waitLog((l) => l.msg === 'holding listener' && l.listener === 'echo', 'echo')).port,
    );
    writeFileSync(
      hyp.file,
      yaml(hyp.dir, tcp('7s', '  extra:\n    addr: 127.0.0.1:0\n'))
        .replace('addr: 127.0.0.1:0\nadmin', 'addr: 127.0.0.2:0\nadmin')
        .replace('admin:\n  addr: 127.0.0.1:0', 'admin:\n  addr: 127.0.0.3:0')
        .replace('timeout: 5s', 'timeout: 6s'),
    );
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 2);
    const warned = hyp.logs.filter((l) => l.level === 'warn').map((l) => String(l.msg));
    for (const key of ['server.addr', 'admin.addr', 'tcp.extra'])
      expect(warned.some((m) => m.includes(key))).toBe(true);
    const seen = await hyp.workerConfig();
    expect(seen.generation).toBe(2);
    expect(seen.config.server.addr).toBe('127.0.0.1:0');
    expect(seen.config.admin.addr).toBe('127.0.0.1:0');
    expect(Object.keys(seen.config.tcp)).toEqual(['echo']);
    expect(seen.config.tcp.echo!.idle_timeout).toBe('7s');
    expect(seen.config.drain.timeout).toBe('6s');
    // Still served on the held sockets.
    const echoed = await new Promise<string>((resolve, reject) => {
      const socket = tcpConnect(echoPort, '127.0.0.1', () => socket.end('hello'));
      let got = '';
      socket.on('data', (d) => {
        got += d.toString();
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(got));
    });
    expect(echoed).toBe('hello');
    expect((await hyp.admin('/ready')).status).toBe(200);
  });

  it("log.level reaches the supervisor's own lines, not only the new workers'", async () => {
    const hyp = await startHyp();
    await hyp.settled(1, 2);
    writeFileSync(hyp.file, yaml(hyp.dir, 'log:\n  level: warn\n'));
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 2);
    expect((await hyp.workerConfig()).config.log.level).toBe('warn');
    const before = hyp.logs.length;
    hyp.child.kill('SIGUSR2');
    await hyp.settled(3, 2);
    const infoLines = hyp.logs.slice(before).filter((l) => l.role === 'supervisor' && l.level === 'info');
    expect(infoLines).toEqual([]);
  });

  it('HYP_* variables and --set from the command line still win after a reload; worker count 2 → 1 → 3', async () => {
    const hyp = await startHyp({
      env: { HYP_DRAIN_TIMEOUT: '8s' },
      sets: ['drain.websocket_spread=3s'],
    });
    await hyp.settled(1, 2);
    writeFileSync(
      hyp.file,
      yaml(hyp.dir, '', 1).replace('timeout: 5s', 'timeout: 9s\n  websocket_spread: 9s'),
    );
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 1);
    const seen = await hyp.workerConfig();
    expect(seen.config.drain.timeout).toBe('8s');
    expect(seen.config.drain.websocket_spread).toBe('3s');
    expect(seen.config.supervisor.workers).toBe(1);
    writeFileSync(hyp.file, yaml(hyp.dir, '', 3));
    hyp.child.kill('SIGHUP');
    await hyp.settled(3, 3);
  });

  it('a burst of SIGHUPs is one roll and exactly one more, which carries the last file', async () => {
    const hyp = await startHyp();
    await hyp.settled(1, 2);
    for (let i = 1; i <= 8; i++) {
      writeFileSync(hyp.file, yaml(hyp.dir).replace('timeout: 5s', `timeout: ${i}s`));
      hyp.child.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 20));
    }
    await hyp.settled(3, 2);
    expect(rolls(hyp)).toEqual([2, 3]);
    expect((await hyp.workerConfig()).config.drain.timeout).toBe('8s');
  });

  it('a SIGHUP during a pod drain changes nothing and says so', async () => {
    const hyp = await startHyp({ config: (dir) => yaml(dir).replace('delay: 0s', 'delay: 3s') });
    await hyp.settled(1, 2);
    hyp.child.kill('SIGTERM');
    await hyp.waitLog((l) => String(l.msg).startsWith('pod drain'), 'drain started');
    writeFileSync(hyp.file, yaml(hyp.dir).replace('timeout: 5s', 'timeout: 9s'));
    hyp.child.kill('SIGHUP');
    await hyp.waitLog((l) => String(l.msg).includes('SIGHUP') && String(l.msg).includes('drain'), 'ignored');
    expect(hyp.logs.some((l) => l.msg === 'configuration reloaded')).toBe(false);
    expect(((await (await hyp.admin('/drain')).json()) as { timeout: string }).timeout).toBe('5s');
    expect(await hyp.exited).toBe(0);
  });

  it('TLS turned on by a reload: the new workers share the supervisor’s ticket keys (resumption across workers)', async () => {
    const hyp = await startHyp({ app: fixtureApp('basic') });
    await hyp.settled(1, 2);
    writeFileSync(
      hyp.file,
      yaml(hyp.dir).replace(
        'server:\n',
        `server:\n  tls:\n    enabled: true\n    cert_file: ${pki.serverCert}\n    key_file: ${pki.serverKey}\n`,
      ),
    );
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 2);
    let session = (await tlsVisit(hyp.httpPort, pki.read(pki.caCert), undefined, '/config')).session;
    let resumed = 0;
    for (let i = 0; i < 30; i++) {
      const v = await tlsVisit(hyp.httpPort, pki.read(pki.caCert), session, '/config');
      if (v.reused) resumed++;
      session = v.session ?? session;
    }
    expect(resumed).toBeGreaterThanOrEqual(28);
  });

  it('a changed ticket_rotation applies after the reload: keys rotate on the new period, older tickets stop resuming', async () => {
    const tls = (rotation: string) => (dir: string) =>
      yaml(dir, 'log:\n  level: debug\n').replace(
        'server:\n',
        `server:\n  tls:\n    enabled: true\n    cert_file: ${pki.serverCert}\n    key_file: ${pki.serverKey}\n    ticket_rotation: ${rotation}\n`,
      );
    const hyp = await startHyp({ app: fixtureApp('basic'), config: tls('1h') });
    await hyp.settled(1, 2);
    const ca = pki.read(pki.caCert);
    const first = (await tlsVisit(hyp.httpPort, ca, undefined, '/config')).session;
    expect((await tlsVisit(hyp.httpPort, ca, first, '/config')).reused).toBe(true);
    writeFileSync(hyp.file, tls('1s')(hyp.dir));
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 2);
    await hyp.waitLog((l) => l.key === 'server.tls.ticket_rotation', 'the new rotation period');
    const rotated = () => hyp.logs.filter((l) => l.msg === 'TLS session-ticket keys rotated').length;
    // Once at start, then twice on the new period: the key of `first` is neither current nor previous.
    await until(() => rotated() >= 3, 'two rotations on the reloaded period', 20_000);
    expect((await tlsVisit(hyp.httpPort, ca, first, '/config')).reused).toBe(false);
  });

  it('ticket_rotation from 0 (never) to a period on a TCP service that drives the keys: rotation starts, and the log names that key', async () => {
    const tls = (rotation: string) => (dir: string) =>
      `${yaml(dir, 'log:\n  level: debug\n')}tcp:\n  echo:\n    addr: 127.0.0.1:0\n    tls:\n      enabled: true\n      cert_file: ${pki.serverCert}\n      key_file: ${pki.serverKey}\n      ticket_rotation: ${rotation}\n`;
    const hyp = await startHyp({ app: fixtureApp('basic'), config: tls('0s') });
    await hyp.settled(1, 2);
    const rotated = () => hyp.logs.filter((l) => l.msg === 'TLS session-ticket keys rotated').length;
    expect(rotated()).toBe(1);
    writeFileSync(hyp.file, tls('1s')(hyp.dir));
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 2);
    const line = await hyp.waitLog(
      (l) => typeof l.key === 'string' && l.key.endsWith('ticket_rotation'),
      'the new period',
    );
    expect(line.key).toBe('tcp.echo.tls.ticket_rotation');
    await until(() => rotated() >= 3 || undefined, 'two rotations on the new period', 20_000);
  });

  it('a changed app key is named in a warning; the workers keep the application they run', async () => {
    const hyp = await startHyp({ config: (dir) => `app: ${fixtureApp('config-echo')}\n${yaml(dir)}` });
    await hyp.settled(1, 2);
    writeFileSync(hyp.file, `app: ${fixtureApp('basic')}\n${yaml(hyp.dir)}`);
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 2);
    const warned = await hyp.waitLog((l) => l.key === 'app', 'a warning naming app');
    expect([warned.level, warned.ignored]).toEqual(['warn', fixtureApp('basic')]);
    const seen = await hyp.workerConfig();
    expect([seen.generation, seen.config.app]).toEqual([2, fixtureApp('config-echo')]);
  });

  it('server.protocol http1 → http2 by a reload: the new generation speaks h2c on the held socket', async () => {
    const h2c = (port: number) =>
      new Promise<number>((resolve, reject) => {
        const session = h2Connect(`http://127.0.0.1:${port}`);
        session.on('error', reject);
        const req = session.request({ ':path': '/config' });
        req.on('response', (headers) => {
          req.resume();
          req.on('end', () => {
            session.close();
            resolve(Number(headers[':status']));
          });
        });
        req.on('error', reject);
        req.end();
      });
    const hyp = await startHyp({
      config: (dir) => yaml(dir).replace('server:\n', 'server:\n  protocol: http1\n'),
    });
    await hyp.settled(1, 2);
    await expect(h2c(hyp.httpPort)).rejects.toThrow();
    writeFileSync(hyp.file, yaml(hyp.dir).replace('server:\n', 'server:\n  protocol: http2\n'));
    hyp.child.kill('SIGHUP');
    await hyp.settled(2, 2);
    expect(await h2c(hyp.httpPort)).toBe(200);
  });
});
