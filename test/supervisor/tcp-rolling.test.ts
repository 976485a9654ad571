/**
 * Raw TCP services survive worker restarts: the supervisor holds the `echo`
 * listener, so short connections made while generations roll are all served.
 */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { demoApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

type Outcome = 'ok' | 'refused' | 'unanswered';

/** Connect, send a unique payload, expect it back, close. */
function echoOnce(port: number, payload: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => finish('unanswered'), 10_000);
    const finish = (o: Outcome) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (d) => {
      got += d;
      if (got === payload) finish('ok');
    });
    socket.on('error', (err: NodeJS.ErrnoException) =>
      finish(err.code === 'ECONNREFUSED' ? 'refused' : 'unanswered'),
    );
    socket.on('close', () => finish(got === payload ? 'ok' : 'unanswered'));
  });
}

describe('tcp service across rolling restarts', () => {
  it('two rolling restarts during a stream of short echo connections: 0 refused, 0 unanswered', async () => {
    sup = await startSupervisor({ app: demoApp, workers: 2, sets: ['tcp.echo.addr=127.0.0.1:0'] });
    const port = (await sup.status()).listeners.find((l) => l.name === 'echo')!.port;
    const outcomes: Record<Outcome, number> = { ok: 0, refused: 0, unanswered: 0 };
    let stop = false;
    let n = 0;
    const lane = async () => {
      while (!stop && n < 50_000) {
        outcomes[await echoOnce(port, `message ${n++} from the test`)]++;
      }
    };
    const lanes = Promise.all(Array.from({ length: 8 }, lane));
    await until(() => outcomes.ok > 200 || undefined, 'echo traffic');
    for (let i = 1; i <= 2; i++) {
      const res = await sup.admin('/restart?wait=1', { method: 'POST' });
      expect(res.status).toBe(200);
      await sup.waitFor((s) => s.other_workers.length === 0, `old generation gone (${i})`);
    }
    const atEnd = outcomes.ok;
    await until(() => outcomes.ok > atEnd + 200 || undefined, 'traffic after the restarts');
    stop = true;
    await lanes;
    console.log(`tcp echo across 2 rolling restarts: ${JSON.stringify(outcomes)}`);
    expect(outcomes.refused).toBe(0);
    expect(outcomes.unanswered).toBe(0);
    expect(outcomes.ok).toBeGreaterThan(400);
    expect((await sup.status()).generation).toBe(3);
  });
});
