/**
 * Bytes on a worker's IPC channel that are not a message make Node's IPC
 * parser throw in the supervisor, outside any code of ours. The supervisor
 * (PID 1 in the pod) survives it: logged as HYP_E_IPC_MESSAGE, and the
 * worker, whose channel is unusable from then on, is replaced by the
 * heartbeat timeout while the pod keeps serving.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('garbage on a worker IPC channel', () => {
  it('the supervisor survives it, logs HYP_E_IPC_MESSAGE, and the heartbeat timeout replaces the worker', async () => {
    sup = await startSupervisor({
      app: fixtureApp('ipc-garbage'),
      workers: 1,
      sets: ['supervisor.heartbeat_timeout=2s'],
    });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const before = ((await (await fetch(`${base}/api/worker`)).json()) as { pid: number }).pid;
    expect(await (await fetch(`${base}/garbage`)).text()).toBe('written');
    await sup.waitLog((l) => l.code === 'HYP_E_IPC_MESSAGE', 'the parse error logged', 20_000);
    const after = await until(
      async () => {
        const res = await fetch(`${base}/api/worker`);
        const { pid } = (await res.json()) as { pid: number };
        return pid !== before ? pid : undefined;
      },
      'a replacement worker serving',
      30_000,
    );
    expect(after).not.toBe(before);
    expect(sup.proc.exitCode).toBeNull();
    expect((await sup.status()).ready).toBe(true);
  });
});
