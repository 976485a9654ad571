/**
 * The worker run on its own (`node dist/apps/server/worker.js app.js`, no
 * supervisor): an uncaught exception drains it — its in-flight request is
 * answered — and it exits 1, so whatever runs it restarts it.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
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
});
