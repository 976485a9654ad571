/**
 * The `hyp` CLI against a real supervisor, and refusals before anything starts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.js';
import { cli, fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

function hyp(args: string[], env: Record<string, string> = {}) {
  // A scratch cwd: the repository's own hyp.yaml (the demo's) must not leak in.
  const cwd = mkdtempSync(join(tmpdir(), 'hyp-cwd-'));
  const r = spawnSync(process.execPath, [cli, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('hyp run refuses invalid config before binding or forking', () => {
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['unknown key', ['--set', 'server.adr=:1'], {}, /server\.adr/],
    [
      'wrong type',
      [],
      { HYP_SUPERVISOR_WORKERS: 'lots' },
      /supervisor\.workers: got "lots" \(from env HYP_SUPERVISOR_WORKERS\)/,
    ],
    ['bad duration', ['--set', 'drain.delay=soon'], {}, /drain\.delay: got "soon"/],
    ['unusable address', [], { HYP_ADMIN_ADDR: '999.1.1.1.1:x' }, /admin\.addr/],
    [
      'unwritable PID directory',
      ['--set', 'supervisor.pid_file=/no/such/dir/hyp.pid'],
      {},
      /supervisor\.pid_file: got "\/no\/such\/dir\/hyp\.pid"/,
    ],
  ];
  for (const [what, args, env, message] of cases) {
    it(`${what}: exit 2, key path named, nothing bound, no worker`, async () => {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'hyp-cli-'));
      const r = hyp(
        [
          'run',
          fixtureApp('basic'),
          '--set',
          `server.addr=127.0.0.1:${port}`,
          '--set',
          `supervisor.pid_file=${join(dir, 'p')}`,
          ...args,
        ],
        env,
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/HYP_E_CONFIG_INVALID/);
      expect(r.stdout).not.toMatch(/worker spawned|holding listener/);
      // nothing was left bound
      const probe = createServer();
      await new Promise<void>((resolve, reject) =>
        probe.once('error', reject).listen(port, '127.0.0.1', () => resolve()),
      );
      probe.close();
    });
  }

  it('a port in use: exit 2 naming the listener, no worker', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as { port: number }).port;
    try {
      const dir = mkdtempSync(join(tmpdir(), 'hyp-cli-'));
      const r = hyp([
        'run',
        fixtureApp('basic'),
        '--set',
        `server.addr=127.0.0.1:${port}`,
        '--set',
        `supervisor.pid_file=${join(dir, 'p')}`,
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/HYP_E_LISTEN: cannot bind listener http/);
      expect(r.stdout).not.toMatch(/worker spawned/);
    } finally {
      taken.close();
    }
  });

  it('a missing app module: exit 2', () => {
    const r = hyp([
      'run',
      '/nope/app.js',
      '--set',
      'server.addr=127.0.0.1:0',
      '--set',
      'admin.addr=127.0.0.1:0',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/HYP_E_APP_NOT_FOUND/);
  });
});

describe('hyp verbs against a running supervisor', () => {
  it('status, health, restart, drain --wait, version, --help', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2 });
    const target = [
      '--set',
      `admin.addr=127.0.0.1:${sup.adminPort}`,
      '--set',
      `supervisor.pid_file=${sup.pidFile}`,
    ];

    const status = hyp(['status', ...target]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/state: ready\s+generation: 1/);
    expect(status.stdout).toMatch(/ID\s+PID\s+STATE\s+GEN/);
    expect(status.stdout.trim().split('\n')).toHaveLength(4);

    const health = hyp(['health', ...target]);
    expect(health).toMatchObject({ code: 0 });
    expect(health.stdout).toMatch(/health: ok\nready:\s+yes/);

    const restart = hyp(['restart', ...target]);
    expect(restart.code).toBe(0);
    expect(restart.stdout).toMatch(/generation 2 serving/);

    expect(hyp(['version']).stdout).toMatch(/^hyp \d+\.\d+\.\d+/);
    for (const verb of ['run', 'restart', 'drain', 'status', 'health', 'version']) {
      const help = hyp([verb, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/^Usage: hyp/);
    }

    const drain = spawn(process.execPath, [cli, 'drain', '--wait', ...target], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    drain.stdout.on('data', (d) => {
      out += d;
    });
    const code = await new Promise((r) => drain.once('exit', r));
    expect(code).toBe(0);
    expect(out).toMatch(/drain started\n(workers draining|drained)\n/);
    expect((await sup.exited).code).toBe(0);
  });

  it('fails with a one-line reason when no supervisor runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-cli-'));
    const r = hyp(['status', '--set', `supervisor.pid_file=${join(dir, 'none.pid')}`]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/HYP_E_NOT_RUNNING: no running hyp supervisor found \(no PID file/);
  });

  it('an unknown verb exits 64 with usage guidance', () => {
    const r = hyp(['frobnicate']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/unknown command "frobnicate"/);
  });

  it("names of Object's own members are no verbs: `hyp constructor`, `hyp help toString` exit 64", () => {
    for (const args of [['constructor'], ['toString'], ['help', 'constructor'], ['help', 'nope']]) {
      const r = hyp(args);
      expect(r.code, args.join(' ')).toBe(64);
      expect(r.stderr, args.join(' ')).toMatch(new RegExp(`HYP_E_USAGE.*unknown command "${args.at(-1)}"`));
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });

  it("`hyp help <verb>` prints that verb's help and exits 0", () => {
    const r = hyp(['help', 'drain']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/hyp drain/);
  });
});

describe('SIGHUP', () => {
  it('re-reads config and rolls; an invalid new config keeps the old one and says why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-hup-'));
    const file = join(dir, 'hyp.yaml');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, 'supervisor:\n  heartbeat_timeout: 10s\n');
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1, env: { HYP_CONFIG: file } });
    writeFileSync(file, 'supervisor:\n  heartbeat_timeout: never\n');
    sup.proc.kill('SIGHUP');
    const line = await sup.waitLog(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('config reload failed'),
      'reload refused',
    );
    expect(line.msg).toContain('supervisor.heartbeat_timeout');
    expect(line.msg).toContain('a duration');
    await sup.waitFor(
      (s) => s.generation === 2 && s.other_workers.length === 0,
      'rolled with the old config',
    );
    writeFileSync(file, 'supervisor:\n  heartbeat_timeout: 12s\n');
    sup.proc.kill('SIGHUP');
    await until(() => sup!.logs.find((l) => l.msg === 'configuration reloaded'), 'reloaded');
    await sup.waitFor((s) => s.generation === 3, 'rolled with the new config');
  });
});
