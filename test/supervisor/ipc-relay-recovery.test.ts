/**
 * Clients that reconnect to a worker resume from the pod's history: the
 * worker asks the supervisor for what they missed, a page of up to 1 MiB per
 * client at a time. Those pages count toward the 32 MiB the relay lets wait
 * for a worker, and the supervisor answered each request at once: before,
 * 100 clients that had missed 2.6 MiB reconnecting to a worker put 33 MiB in
 * its queue within a moment, the worker was cut off
 * (HYP_E_WORKER_RELAY_STALLED), its clients reconnected to the next worker
 * and did the same there: 9 cut-offs in a minute, and no client resumed.
 * The supervisor now answers a worker's recovery requests as it reads them.
 */
import { describe, expect, it } from 'vitest';
import { fixtureApp, until } from '../helpers/supervisor.js';
import { metric, relayPod } from './relay-helpers.js';
import { TestClient } from './ws-helpers.js';

const pod = relayPod();
const clients = pod.clients;

describe('many clients resuming at once on one worker', () => {
  it('all resume, in order, and the worker is not cut off', async () => {
    const running = await pod.start({
      app: fixtureApp('ws-relay'),
      workers: 1,
      sets: ['supervisor.heartbeat_timeout=120s', 'websocket.send_buffer_limit=256MiB'],
    });
    for (let i = 0; i < 100; i++) {
      const c = new TestClient(running.httpPort, { clientId: `c${i}` });
      clients.push(c);
      await c.connect();
      await c.subscribe('flood');
    }
    for (const c of clients) c.goOffline();
    // 40 messages of 64 KiB (2.6 MiB) published while they are away: three pages each to resume
    const flood = await fetch(`http://127.0.0.1:${running.httpPort}/flood?n=40&bytes=65536`, {
      method: 'POST',
    });
    expect(flood.status).toBe(200);
    for (const c of clients) c.goOnline();

    const expected = Array.from({ length: 40 }, (_, i) => `server-${i}`);
    await until(
      () => (clients.every((c) => c.ids('flood').length >= expected.length) ? true : undefined),
      'every client resumed',
      90_000,
    );
    for (const c of clients) expect(c.ids('flood')).toEqual(expected);
    expect(clients.flatMap((c) => c.errors)).toEqual([]);
    // before: cut off again and again, no client resumed
    expect(running.logs.find((l) => l.code === 'HYP_E_WORKER_RELAY_STALLED')).toBeUndefined();
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(0);
  }, 150_000);
});
