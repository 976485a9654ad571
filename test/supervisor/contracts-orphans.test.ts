/**
 * ARCHITECTURE.md §3: "A worker exits by itself when its IPC channel closes
 * (no orphans if the supervisor is SIGKILLed)", for the moments the other
 * specs (drain.test.ts, ipc-orphan.test.ts, shutdown-hooks.test.ts) do not
 * cover: a worker still in its app's async setup, and one of an old
 * generation draining a long request.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
const leftovers: number[] = [];
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
  for (const pid of leftovers.splice(0)) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
});

describe('contract §3: no orphans when the supervisor is SIGKILLed', () => {
  it('a worker whose app setup is still waiting (never finishes): it leaves on its own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    sup = await startSupervisor({
      app: fixtureApp('slow-setup'),
      workers: 1,
      ready: false,
      sets: ['drain.timeout=300s'],
      env: { HYP_TEST_SETUP_GATE: join(dir, 'never') },
    });
    const waiting = await sup.waitLog((l) => l.msg === 'setup waiting', 'setup waiting');
    const pid = Number(waiting.pid);
    leftovers.push(pid);
    sup.proc.kill('SIGKILL');
    await sup.exited;
    await until(() => !isAlive(pid) || undefined, `worker ${pid} gone`, 20_000);
    expect(sup.logs.filter((l) => l.pid === pid && l.level === 'fatal')).toEqual([]);
  });

  it('workers of two generations, the old one draining a long request: both leave on their own', async () => {
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 1,
      sets: ['drain.timeout=300s'],
    });
    const old = (await sup.status()).workers[0]!.pid;
    leftovers.push(old);
    const slow = fetch(`http://127.0.0.1:${sup.httpPort}/api/slow?ms=120000`).then(
      (r) => r.status,
      (err: unknown) => String(err),
    );
    await sup.waitFor((s) => s.workers[0]!.inflight === 1, 'request in flight');
    expect(
      ((await (await sup.admin('/restart?wait=1', { method: 'POST' })).json()) as { ok: boolean }).ok,
    ).toBe(true);
    const st = await sup.status();
    expect(st.other_workers.map((w) => [w.pid, w.state])).toEqual([[old, 'draining']]);
    const fresh = st.workers[0]!.pid;
    leftovers.push(fresh);
    sup.proc.kill('SIGKILL');
    await sup.exited;
    await until(() => (!isAlive(old) && !isAlive(fresh)) || undefined, 'both workers gone', 20_000);
    await slow;
  });
});
