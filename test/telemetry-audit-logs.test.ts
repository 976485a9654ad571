/**
 * Logs as a log pipeline reads them, from a real supervisor and workers:
 * request-scoped lines carry the request id, hyp itself never writes a
 * request's credentials (Authorization, Cookie, a token in the URL), and
 * log.level (config or HYP_LOG_LEVEL) applies to both roles.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from './helpers/ports.js';
import {
  cli,
  collectLogLines,
  type LogLine,
  type Running,
  root,
  startSupervisor,
  until,
} from './helpers/supervisor.js';

/** Routes: /bad throws a 400 (HYP_E_BAD_REQUEST), /boom a plain Error (500), /hello answers. */
function writeApp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-logs-audit-'));
  const file = join(dir, 'app.mjs');
  const index = pathToFileURL(join(root, 'dist', 'apps', 'server', 'index.js')).href;
  const errors = pathToFileURL(join(root, 'dist', 'supervisor', 'errors.js')).href;
  writeFileSync(
    file,
    `import { defineApp } from ${JSON.stringify(index)};
import { HypError } from ${JSON.stringify(errors)};
export default defineApp((app) => {
  app.get('/bad', () => {
    throw new HypError('HYP_E_BAD_REQUEST', { detail: 'refused by the spec' });
  });
  app.get('/boom', () => {
    throw new Error('boom');
  });
  app.get('/hello', (c) => {
    c.log.info('hello');
    return c.text('hi');
  });
});
`,
  );
  return file;
}

const secrets = {
  authorization: 'Bearer sekrit-bearer-0123',
  cookie: 'session=sekrit-cookie-4567',
  'proxy-authorization': 'Basic c2Vrcml0LXByb3h5',
};
const urlToken = 'sekrit-url-89ab';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('request logs of a real pod', () => {
  it('carry request_id, and hold no credential of the request (HYP_LOG_LEVEL=debug)', async () => {
    sup = await startSupervisor({ app: writeApp(), workers: 1, env: { HYP_LOG_LEVEL: 'debug' } });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const statuses: number[] = [];
    for (const [path, id] of [
      ['/bad', 'audit-bad'],
      ['/boom', 'audit-boom'],
      ['/hello', 'audit-hello'],
    ] as const) {
      const res = await fetch(`${base}${path}?token=${urlToken}&access_token=${urlToken}`, {
        headers: { ...secrets, 'x-request-id': id },
      });
      await res.text();
      statuses.push(res.status);
    }
    expect(statuses).toEqual([400, 500, 200]);
    const lines = await until(() => {
      const found = ['audit-bad', 'audit-boom', 'audit-hello'].map((id) =>
        sup!.logs.find((l) => l.request_id === id),
      );
      return found.every(Boolean) ? (found as LogLine[]) : undefined;
    }, 'a log line per request');
    expect(lines.map((l) => [l.level, l.role])).toEqual([
      ['debug', 'worker'],
      ['error', 'worker'],
      ['info', 'worker'],
    ]);
    const all = sup.logs.map((l) => JSON.stringify(l)).join('\n') + sup.stderr.join('');
    for (const secret of [...Object.values(secrets), urlToken, 'c2Vrcml0'])
      expect(all, `${secret} in the logs`).not.toContain(secret);
  });
});

describe('log.level', () => {
  it('warn (HYP_LOG_LEVEL) silences info lines of the supervisor and its workers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-logs-level-'));
    const [http, admin] = [await freePort(), await freePort()];
    const proc = spawn(
      process.execPath,
      [
        cli,
        'run',
        writeApp(),
        ...[
          `server.addr=127.0.0.1:${http}`,
          `admin.addr=127.0.0.1:${admin}`,
          `supervisor.pid_file=${join(dir, 'hyp.pid')}`,
          'supervisor.workers=1',
          'drain.delay=0s',
        ].flatMap((s) => ['--set', s]),
      ],
      {
        cwd: dir,
        env: { ...process.env, HYP_LOG_FORMAT: 'json', HYP_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const logs: LogLine[] = [];
    collectLogLines(proc.stdout!, logs);
    const exited = new Promise((r) => proc.once('exit', r));
    try {
      await until(async () => {
        const res = await fetch(`http://127.0.0.1:${admin}/ready`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      }, 'ready');
      const res = await fetch(`http://127.0.0.1:${http}/hello`);
      expect(await res.text()).toBe('hi');
      // /boom logs at error: the line shows the level is applied, not that logging is off.
      expect((await fetch(`http://127.0.0.1:${http}/boom`)).status).toBe(500);
      await until(() => logs.find((l) => l.level === 'error' && l.role === 'worker'), 'the 500 logged');
      expect(logs.filter((l) => l.level === 'info' || l.level === 'debug')).toEqual([]);
    } finally {
      proc.kill('SIGTERM');
      await exited;
    }
  });
});
