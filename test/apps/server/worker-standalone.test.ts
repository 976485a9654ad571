/**
 * The worker run on its own (`node dist/apps/server/worker.js app.js`, no
 * supervisor): an uncaught exception drains it — its in-flight request is
 * answered — and it exits 1, so whatever runs it restarts it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fixtureApp, type LogLine, root, until } from '../../helpers/supervisor.js';

describe('standalone worker', () => {
  it('an uncaught exception: a fatal line, the in-flight request answered, exit 1', async () => {
    const proc = spawn(
      process.execPath,
      [join(root, 'dist', 'apps', 'server', 'worker.js'), fixtureApp('basic')],
      {
        env: {
          ...process.env,
          HYP_SERVER_ADDR: '127.0.0.1:0',
          HYP_LOG_FORMAT: 'json',
          HYP_DRAIN_TIMEOUT: '10s',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const logs: LogLine[] = [];
      let buf = '';
      proc.stdout.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          logs.push(JSON.parse(buf.slice(0, nl)) as LogLine);
          buf = buf.slice(nl + 1);
        }
      });
      const serving = await until(() => logs.find((l) => l.msg === 'http listener serving'), 'listener');
      await until(() => logs.find((l) => l.msg === 'worker ready'), 'ready');
      // Pipelined on one connection: the exception fires while the slow request is in flight.
      const answers = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(serving.port), '127.0.0.1', () =>
          socket.write(
            'GET /api/slow?ms=1000 HTTP/1.1\r\nhost: x\r\n\r\nGET /throw-later HTTP/1.1\r\nhost: x\r\n\r\n',
          ),
        );
        let got = '';
        socket.setEncoding('latin1');
        socket.on('data', (d: string) => {
          got += d;
        });
        socket.on('close', () => resolve(got));
        socket.on('error', reject);
      });
      expect(answers.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
      expect(answers).toMatch(/\r\n\r\ndoneHTTP\/1\.1 /);
      expect(answers).toMatch(/\r\n\r\nthrown soon$/);
      expect(await exited).toBe(1);
      const fatal = logs.find((l) => l.level === 'fatal');
      expect(fatal).toMatchObject({ origin: 'uncaughtException' });
      expect(logs.some((l) => l.msg === 'worker draining' && l.reason === 'uncaught exception')).toBe(true);
    } finally {
      proc.kill('SIGKILL');
    }
  });

  describe('a boot failure: one `hyp: HYP_E_…: message` line per problem, like the CLI, and its exit code', () => {
    const worker = join(root, 'dist', 'apps', 'server', 'worker.js');
    const run = (env: Record<string, string>, execArgv: string[] = []) =>
      spawnSync(process.execPath, [...execArgv, worker, fixtureApp('basic')], {
        env: { ...process.env, HYP_SERVER_ADDR: '127.0.0.1:0', ...env },
        encoding: 'utf8',
        timeout: 30_000,
      });

    it('a configuration error: every problem on its own line, with its key path, exit 2', () => {
      const out = run({ HYP_SERVER_ADDR: 'bogus', HYP_LOG_LEVEL: 'loud' });
      expect(out.status).toBe(2);
      const lines = out.stderr.trimEnd().split('\n');
      // Before: only the first problem, without the `hyp: ` prefix.
      expect(lines).toHaveLength(2);
      for (const line of lines) expect(line).toMatch(/^hyp: HYP_E_CONFIG_INVALID: /);
      expect(out.stderr).toContain('server.addr');
      expect(out.stderr).toContain('log.level');
    });

    it('an unreadable config file: one line, exit 2', () => {
      const out = run({ HYP_CONFIG: join(root, 'no-such-hyp-config.yaml') });
      expect(out.status).toBe(2);
      expect(out.stderr).toMatch(/^hyp: HYP_E_CONFIG_FILE: cannot read config file .*no such file\n$/);
    });

    it('an error that is not a HypError: one line with a catalog code, no stack trace, exit 70', () => {
      // Make the boot's read of the app path throw a plain TypeError, as a bug in boot would
      // (only there: dependencies read process.argv while loading).
      const inject = `const app = process.argv[2];
Object.defineProperty(process.argv, 2, { get() {
  if (new Error().stack.includes('bootStandalone')) throw new TypeError('boot exploded');
  return app;
} });`;
      const dir = mkdtempSync(join(tmpdir(), 'hyp-worker-boot-'));
      const preload = join(dir, 'inject.mjs');
      writeFileSync(preload, inject);
      let out: ReturnType<typeof run>;
      try {
        out = run({}, ['--import', pathToFileURL(preload).href]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      // Before: `console.error(err)`: the whole TypeError with its stack, exit 1.
      expect(out.stderr).toBe('hyp: HYP_E_APP_START: app failed to start: boot exploded\n');
      expect(out.status).toBe(70);
    });
  });
});
