/**
 * The socket hand-off contract for TCP services, with worker processes on a
 * held listener (the supervisor's part is played by this test): two rolling
 * restarts during a stream of short echo connections lose nothing.
 * Uses the built worker code (dist/), like the supervisor specs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { holdListener } from '../../../../supervisor/listeners.js';

const fixture = fileURLToPath(new URL('./fixtures/echo-worker.mjs', import.meta.url));
const built = existsSync(
  fileURLToPath(new URL('../../../../dist/apps/server/tcp/server.js', import.meta.url)),
);

const children: ChildProcess[] = [];

async function startWorker(fd: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [fixture], { stdio: ['ignore', 'inherit', 'inherit', fd, 'ipc'] });
  children.push(child);
  const [ready] = (await once(child, 'message')) as [{ type: string }];
  expect(ready.type).toBe('ready');
  return child;
}

async function drainWorker(child: ChildProcess): Promise<{ accepted: number; open: number }> {
  child.send({ type: 'drain' });
  const [drained] = (await once(child, 'message')) as [{ type: string; accepted: number; open: number }];
  if (child.exitCode === null) await once(child, 'exit');
  return drained;
}

type Outcome = 'ok' | 'refused' | 'unanswered';

/** One short connection: connect, send a line, read the whole echo, close. */
function echoOnce(port: number, i: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const message = `ping ${i}\n`;
    let got = '';
    const socket = connect({ port, host: '127.0.0.1' });
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(message));
    socket.on('data', (d: string) => {
      got += d;
      if (got.length >= message.length) socket.end();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve('refused');
    });
    socket.on('close', () => resolve(got === message ? 'ok' : 'unanswered'));
  });
}

describe.skipIf(!built)('TCP services across worker restarts (held listener)', () => {
  it('two rolling restarts during a stream of short echo connections: 0 refused, 0 unanswered', async () => {
    const held = await holdListener('echo', '127.0.0.1:0');
    const outcomes: Record<Outcome, number> = { ok: 0, refused: 0, unanswered: 0 };
    let stop = false;
    let n = 0;
    // The held socket turns to LISTEN with the first worker's listen(); from then on it never closes.
    let current = await startWorker(held.fd);
    const lanes = Array.from({ length: 8 }, async () => {
      const deadline = Date.now() + 60_000;
      while (!stop && Date.now() < deadline && n < 50_000) {
        outcomes[await echoOnce(held.port, n++)]++;
      }
    });
    try {
      const served: number[] = [];
      for (let restart = 0; restart < 2; restart++) {
        const before = outcomes.ok;
        while (outcomes.ok < before + 300) await new Promise((r) => setTimeout(r, 10));
        const next = await startWorker(held.fd); // the new generation is ready…
        served.push((await drainWorker(current)).accepted); // …then the old one drains
        current = next;
      }
      const before = outcomes.ok;
      while (outcomes.ok < before + 300) await new Promise((r) => setTimeout(r, 10));
      stop = true;
      await Promise.all(lanes);
      served.push((await drainWorker(current)).accepted);

      expect(outcomes.refused).toBe(0);
      expect(outcomes.unanswered).toBe(0);
      expect(outcomes.ok).toBe(n);
      // Every generation did serve part of the stream.
      for (const count of served) expect(count).toBeGreaterThan(0);
    } finally {
      stop = true;
      await Promise.all(lanes);
      for (const child of children) if (child.exitCode === null) child.kill();
      held.close();
    }
  }, 120_000);
});
