/**
 * The supervisor ⇄ worker IPC channel against what an application inside a
 * worker can put on it: its own `process.send()` of hyp's message types, and
 * (writing to the channel's fd) malformed messages. The
 * supervisor holds the pod's sockets: none of this may crash it, break its
 * admin answers, or make it treat a worker that is not serving as ready.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type LogLine, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

const app = fixtureApp('ipc-hostile');
const ipcWarning = (what: RegExp) => (l: LogLine) =>
  l.code === 'HYP_E_IPC_MESSAGE' && l.role === 'supervisor' && what.test(String(l.msg));

async function send(s: Running, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${s.httpPort}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function expectFigures(w: Record<string, unknown>): void {
  for (const key of ['connections', 'inflight', 'ws_clients', 'rss_bytes', 'loop_delay_ms'])
    expect(typeof w[key], `${key} of ${JSON.stringify(w)}`).toBe('number');
}

describe('malformed messages from a worker', () => {
  it('a start-failed whose fields cannot be turned into text does not crash the supervisor', async () => {
    sup = await startSupervisor({ app, workers: 1 });
    const before = (await sup.status()).workers[0]!;
    const sent = await send(sup, '/send/start-failed-unprintable?raw=1');
    expect(sent.status).toBe(200);
    // The next worker message (its heartbeat, within a second) comes after it on the channel.
    const heardAfter = Date.now();
    await until(() => Date.now() - heardAfter > 1500 || sup!.proc.exitCode !== null || undefined, '1.5 s');
    expect(sup.proc.exitCode).toBe(null);
    expect(sup.stderr.join('')).not.toMatch(/TypeError/);
    const st = await sup.status();
    expect(st.ready).toBe(true);
    expect(st.workers.map((w) => w.pid)).toEqual([before.pid]);
  });

  it('heartbeats with non-numeric, negative or missing figures: taken as 0 and reported (HYP_E_IPC_MESSAGE); /status and /drain keep answering', async () => {
    sup = await startSupervisor({ app, workers: 1 });
    for (const name of [
      'heartbeat-unprintable',
      'heartbeat-bigint',
      'heartbeat-negative',
      'heartbeat-empty',
    ]) {
      // The worker blocks for 1.5 s after sending it: its own next heartbeat cannot overwrite the bad one.
      const sending = send(sup, `/send/${name}?raw=1&block=1500`);
      const answers: number[] = [];
      for (let i = 0; i < 10; i++) {
        const [status, drain] = await Promise.all([sup.admin('/status'), sup.admin('/drain')]);
        answers.push(status.status, drain.status);
        if (status.status === 200) {
          const body = (await status.json()) as { workers: Array<Record<string, unknown>> };
          expectFigures(body.workers[0]!);
        } else await status.body?.cancel();
        if (drain.status === 200) {
          const body = (await drain.json()) as { inflight: unknown };
          expect(typeof body.inflight).toBe('number');
        } else await drain.body?.cancel();
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(
        answers.every((s) => s === 200),
        `${name}: ${answers.join(',')}`,
      ).toBe(true);
      expect((await sending).status).toBe(200);
    }
    await sup.waitLog(
      ipcWarning(/heartbeat figures connections, inflight, wsClients, rss, loopDelayMs are not finite/),
      'HYP_E_IPC_MESSAGE',
    );
    const st = await sup.status();
    expect(st.ready).toBe(true);
    expectFigures(st.workers[0] as unknown as Record<string, unknown>);
  });
});

describe('forged replay-window claims', () => {
  it('malformed nonce-claim? messages are dropped and reported (HYP_E_IPC_MESSAGE); a flood of distinct windows is refused, not kept; the pod stays ready', async () => {
    sup = await startSupervisor({ app, workers: 1 });
    const s = sup;
    const reasons: Record<string, RegExp> = {
      'claim-not-arrays': /without nonces and stamps of one length/,
      'claim-too-many': /with more than 4096 nonces/,
      'claim-empty-nonce': /nonce 0 is not 1 to 64 bytes/,
      'claim-number-stamp': /stamp 0 is not a bigint/,
      'claim-bad-window': /windowMs is not a positive integer/,
    };
    for (const [name, reason] of Object.entries(reasons)) {
      expect((await send(s, `/send/${name}`)).status).toBe(200);
      await s.waitLog(ipcWarning(reason), name);
    }
    for (let i = 0; i < 100; i++) expect((await send(s, '/send/claim-many-windows')).status).toBe(200);
    const st = await s.status();
    expect(st.ready).toBe(true);
    expect(st.workers).toHaveLength(1);
  });
});

describe("an app's own process.send() of hyp's message types", () => {
  it("a 'ready' sent during setup is refused (HYP_E_IPC_RESERVED): a roll whose setup then fails keeps the old generation serving", async () => {
    sup = await startSupervisor({
      app,
      workers: 1,
      env: { IPC_HOSTILE_SETUP: 'ready', IPC_HOSTILE_SETUP_MS: '1500', IPC_HOSTILE_SETUP_FAIL: '1' },
    });
    const old = (await sup.status()).workers[0]!;
    const roll = (await (await sup.admin('/restart?wait=1', { method: 'POST' })).json()) as {
      ok: boolean;
      error?: string;
    };
    expect(roll.ok).toBe(false);
    expect(roll.error).toMatch(/HYP_E_IPC_RESERVED/);
    const st = await sup.status();
    expect(st.ready).toBe(true);
    expect(st.workers.map((w) => [w.pid, w.state])).toEqual([[old.pid, 'ready']]);
    const served = await send(sup, '/api/worker');
    expect(served.body.pid).toBe(old.pid);
  });

  it("a 'failing' or 'heartbeat' sent from a handler throws there and changes nothing; other messages pass", async () => {
    sup = await startSupervisor({ app, workers: 1 });
    const before = (await sup.status()).workers[0]!;
    for (const name of ['failing', 'heartbeat-empty', 'ready']) {
      const r = await send(sup, `/send/${name}`);
      expect(r.status, name).toBe(500);
    }
    await sup.waitLog(
      (l) => l.role === 'worker' && JSON.stringify(l).includes('HYP_E_IPC_RESERVED'),
      'the refusal in the worker log',
    );
    for (const name of ['custom', 'string', 'app-log'])
      expect((await send(sup, `/send/${name}`)).status, name).toBe(200);
    // No replacement was started for a failure that never happened.
    const since = Date.now();
    await until(() => Date.now() - since > 1000 || undefined, '1 s');
    expect(sup.logs.filter((l) => String(l.msg).includes('hit an uncaught exception'))).toEqual([]);
    const st = await sup.status();
    expect(st.workers.map((w) => w.pid)).toEqual([before.pid]);
  });
});
