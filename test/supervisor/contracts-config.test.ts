/**
 * ARCHITECTURE.md §5, configuration, through the real `hyp run`: an
 * invalid config stops the process before a single bind() or listen()
 * (seen with strace), naming the key path, the bad value and what was
 * expected, from whichever source; precedence defaults < file < env <
 * --set and PORT as the worker receives them; secrets never in a log line.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makePki } from '../apps/server/tls/certs.js';
import { createTestHost } from '../helpers/netns.js';
import { freePort } from '../helpers/ports.js';
import {
  cli,
  collectLogLines,
  fixtureApp,
  type LogLine,
  type Running,
  startSupervisor,
  until,
} from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

/** `hyp run` under strace: the bind/listen/execve calls of the whole process tree, and how it ended. */
function tracedRun(args: string[], env: Record<string, string>, files: Record<string, string> = {}) {
  const cwd = mkdtempSync(join(tmpdir(), 'hyp-cfg-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(cwd, name), text);
  const trace = join(cwd, 'trace');
  const r = spawnSync(
    'strace',
    ['-f', '-qq', '-e', 'trace=bind,listen,execve', '-o', trace, process.execPath, cli, 'run', ...args],
    {
      cwd,
      encoding: 'utf8',
      env: { ...process.env, ...env },
      timeout: 60_000,
    },
  );
  const calls = readFileSync(trace, 'utf8').split('\n').filter(Boolean);
  return { code: r.status, stderr: r.stderr, calls };
}

describe('contract §5: invalid config stops the process before any socket is bound', () => {
  const cases: Array<[string, string[], Record<string, string>, Record<string, string>, RegExp]> = [
    [
      'a bad duration in the file',
      [],
      {},
      { 'hyp.yaml': 'drain:\n  delay: soon\n' },
      /drain\.delay: got "soon" \(from .*hyp\.yaml.*\), expected a duration such as 250ms/,
    ],
    [
      'a bad integer in the environment',
      [],
      { HYP_SUPERVISOR_WORKERS: 'lots' },
      {},
      /supervisor\.workers: got "lots" \(from env HYP_SUPERVISOR_WORKERS\), expected an integer/,
    ],
    [
      'a bad size from --set',
      ['--set', 'websocket.max_message_size=huge'],
      {},
      {},
      /websocket\.max_message_size: got "huge" \(from --set websocket\.max_message_size\), expected a size such as 512, 64KiB or 1MiB/,
    ],
    [
      'a bad admin address from HYP_ADMIN_ADDR',
      [],
      { HYP_ADMIN_ADDR: 'nope' },
      {},
      /admin\.addr: got "nope" \(from env HYP_ADMIN_ADDR\), expected a listen address/,
    ],
  ];
  for (const [what, args, env, files, message] of cases) {
    it(`${what}: exit 2, HYP_E_CONFIG_INVALID with key path, value and expectation; no bind(), no listen(), no worker`, async () => {
      const port = await freePort();
      const r = tracedRun(
        [fixtureApp('contracts'), '--set', `server.addr=127.0.0.1:${port}`, ...args],
        { HYP_LOG_FORMAT: 'json', ...env },
        files,
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/HYP_E_CONFIG_INVALID/);
      expect(r.stderr).toMatch(message);
      // the trace worked: it saw the process start
      expect(r.calls[0]).toMatch(/execve\(/);
      expect(r.calls.filter((c) => /\b(bind|listen)\(/.test(c))).toEqual([]);
      expect(r.calls.filter((c) => /execve\(/.test(c))).toHaveLength(1);
    });
  }
});

describe('contract §5: precedence defaults < file < env < --set, and PORT', () => {
  it('the worker runs with the merged config; PORT sets the HTTP port and keeps the host', async () => {
    const port = await freePort();
    const cwd = mkdtempSync(join(tmpdir(), 'hyp-cfg-'));
    writeFileSync(
      join(cwd, 'hyp.yaml'),
      [
        'server:',
        '  addr: 127.0.0.1:1',
        'admin:',
        '  addr: 127.0.0.1:0',
        'supervisor:',
        '  workers: 1',
        `  pid_file: ${join(cwd, 'hyp.pid')}`,
        'drain:',
        '  delay: 7s',
        '  timeout: 9s',
        'websocket:',
        '  history_size: 11',
        '  max_message_size: 32KiB',
        '',
      ].join('\n'),
    );
    const proc = spawn(
      process.execPath,
      [cli, 'run', fixtureApp('config-echo'), '--set', 'websocket.history_size=13'],
      {
        cwd,
        env: {
          ...process.env,
          HYP_LOG_FORMAT: 'json',
          PORT: String(port),
          HYP_DRAIN_TIMEOUT: '4s',
          HYP_WEBSOCKET_HISTORY_SIZE: '12',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const logs: LogLine[] = [];
      collectLogLines(proc.stdout!, logs);
      const held = await until(
        () => logs.find((l) => l.msg === 'holding listener' && l.listener === 'http'),
        'http listener',
      );
      expect(held).toMatchObject({ addr: `127.0.0.1:${port}`, port });
      const got = await until(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/config`, { headers: { connection: 'close' } });
        return res.status === 200
          ? ((await res.json()) as { config: Record<string, Record<string, unknown>> })
          : undefined;
      }, 'the worker serving');
      const { config } = got;
      expect(config.drain).toMatchObject({ delay: '7s', timeout: '4s' }); // file; env over file
      expect(config.websocket).toMatchObject({ history_size: 13, max_message_size: '32KiB' }); // --set over env over file
      expect(config.supervisor).toMatchObject({ heartbeat_timeout: '10s' }); // the default
      expect(config.server).toMatchObject({ addr: `127.0.0.1:${port}` });
    } finally {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
  });
});

describe('contract §5: secrets never in the logs', () => {
  it('the admin token, TLS key and WebSocket AES/HMAC keys appear in no line of the supervisor or the workers, at debug level, through start, refused and accepted admin calls, a crash, a roll and the drain', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-secrets-'));
    const token = `tok-${randomBytes(16).toString('hex')}`;
    const wrongToken = `wrong-${randomBytes(16).toString('hex')}`;
    const aes = randomBytes(32);
    const hmac = randomBytes(32);
    writeFileSync(join(dir, 'token'), `${token}\n`);
    writeFileSync(join(dir, 'aes.key'), aes);
    writeFileSync(join(dir, 'hmac.key'), hmac);
    const pki = makePki();
    const pemBody = readFileSync(pki.serverKey, 'utf8')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('-----'));
    const host = createTestHost();
    try {
      sup = await startSupervisor({
        app: fixtureApp('contracts'),
        workers: 2,
        sets: [
          'log.level=debug',
          'admin.addr=0.0.0.0:0',
          `admin.token_file=${join(dir, 'token')}`,
          `websocket.security.aes_key_file=${join(dir, 'aes.key')}`,
          `websocket.security.hmac_key_file=${join(dir, 'hmac.key')}`,
          'server.tls.enabled=true',
          `server.tls.cert_file=${pki.serverCert}`,
          `server.tls.key_file=${pki.serverKey}`,
          'supervisor.backoff_initial=100ms',
        ],
      });
      const s = sup;
      const remote = (auth: string) =>
        host.exec('curl', [
          '-s',
          '-m',
          '10',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '-X',
          'POST',
          '-H',
          `authorization: Bearer ${auth}`,
          `http://${host.hostAddr}:${s.adminPort}/restart`,
        ]);
      expect(remote(wrongToken)).toBe('403');
      await s.waitLog(
        (l) => l.msg === 'admin action refused: not loopback, no valid token',
        'the refusal logged',
      );
      const before = (await s.status()).generation;
      expect(remote(token)).toBe('202');
      await s.waitFor((st) => st.generation === before + 1 && st.other_workers.length === 0, 'the roll');
      const victim = (await s.status()).workers[0]!.pid;
      process.kill(victim, 'SIGKILL');
      await s.waitFor(
        (st) => st.ready && st.workers.length === 2 && st.workers.every((w) => w.pid !== victim),
        'replaced',
      );
      s.proc.kill('SIGTERM');
      expect((await s.exited).code).toBe(0);

      const text = `${s.logs.map((l) => JSON.stringify(l)).join('\n')}\n${s.stderr.join('')}`;
      expect(s.logs.length).toBeGreaterThan(20);
      expect(s.logs.some((l) => l.level === 'debug')).toBe(true);
      const forms = (b: Buffer) => [
        b.toString('hex'),
        b.toString('base64'),
        b.toString('base64url'),
        b.toString('latin1'),
      ];
      for (const secret of [token, wrongToken, ...forms(aes), ...forms(hmac), ...pemBody])
        expect(text.includes(secret), `a secret in the logs: ${secret.slice(0, 12)}…`).toBe(false);
    } finally {
      host.remove();
    }
  });

  it('a key file of the wrong size is refused naming the file and its size, never its bytes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-secrets-'));
    const aes = randomBytes(31);
    writeFileSync(join(dir, 'aes.key'), aes);
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'run',
        fixtureApp('contracts'),
        '--set',
        `websocket.security.aes_key_file=${join(dir, 'aes.key')}`,
      ],
      { cwd: dir, encoding: 'latin1', timeout: 60_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /websocket\.security\.aes_key_file: got ".*aes\.key".*a file of exactly 32 bytes \(AES-256\), it has 31/,
    );
    for (const secret of [aes.toString('hex'), aes.toString('base64'), aes.toString('latin1')])
      expect(`${r.stdout}${r.stderr}`.includes(secret)).toBe(false);
  });
});
