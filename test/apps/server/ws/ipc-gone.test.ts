import { fork } from 'node:child_process';
import { expect, it } from 'vitest';
import { compileFixture } from './compile.js';

it('a worker whose supervisor is gone can still publish and recover: no ERR_IPC_CHANNEL_CLOSED crash', async () => {
  const script = await compileFixture('test/apps/server/ws/ipc-gone.fixture.ts');
  const child = fork(script, [], { serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.once('message', () => child.disconnect());
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(out).not.toMatch(/ERR_IPC_CHANNEL_CLOSED/);
  expect(out).toMatch(/recover rejected: no supervisor IPC channel/);
  expect(out).toMatch(/alive/);
  expect(code).toBe(0);
}, 60_000);
