/**
 * The relay holds the pod once a worker is backed up, and gives up on it
 * past 32 MiB waiting. Backed up used to mean more than 16 messages
 * unwritten, whatever their size: with large messages (max_message_size
 * raised past 2 MiB) 32 MiB waited before the 17th, so a worker that only
 * paused (a GC, a debugger, a busy second) was cut off and its clients
 * dropped without the others ever being held. Now more than 4 MiB
 * unwritten is backed up too.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { relayLowWaterBytes } from '../../supervisor/worker-process.js';
import { fixtureApp, until } from '../helpers/supervisor.js';
import { metric, mib, relayPod } from './relay-helpers.js';

const pod = relayPod();

describe('large messages to a worker that does not read for a while', () => {
  it('hold the other workers before 32 MiB waits for it: it is not cut off, and gets every message once it runs again', async () => {
    const running = await pod.start({
      app: fixtureApp('ws-relay'),
      workers: 3,
      sets: [
        'supervisor.heartbeat_timeout=120s',
        'websocket.max_message_size=8MiB',
        'websocket.send_buffer_limit=256MiB',
      ],
    });
    const subscriber = await pod.client(running.httpPort, true);
    process.kill(subscriber.pid, 'SIGSTOP');
    pod.stopped.push(subscriber.pid);
    const pub = await pod.client(running.httpPort, false);

    // 20 publishes of 3 MiB (60 MiB), each once the last has left the client, in at most 20 s
    const pad = 'x'.repeat(3 * mib);
    let sent = 0;
    const end = Date.now() + 20_000;
    while (sent < 20 && Date.now() < end) {
      if (pub.ws.bufferedAmount === 0) pub.publish(`${sent++}`, pad);
      await new Promise((r) => setTimeout(r, 20));
    }
    const backlogs = await metric(running, 'hyp_supervisor_ws_relay_backlogs_total');
    const cutoffs = await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total');
    console.log(
      `3 MiB publishes: ${sent} sent while a worker was stopped; backlogs ${backlogs}, cut-offs ${cutoffs}`,
    );
    // before: no hold ever came (backlogs 0), and the stopped worker was cut off at 32 MiB
    expect(cutoffs).toBe(0);
    expect(backlogs).toBeGreaterThanOrEqual(1);

    process.kill(subscriber.pid, 'SIGCONT');
    await until(
      () => (subscriber.ids.length >= sent ? true : undefined),
      `${sent} deliveries once the worker runs again`,
      60_000,
    );
    expect(subscriber.ids).toEqual(Array.from({ length: sent }, (_, i) => `${i}`));
    await until(
      async () => ((await metric(running, 'hyp_supervisor_ws_relay_backlog_bytes')) === 0 ? true : undefined),
      'nothing waiting in the supervisor',
    );
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(0);
  }, 120_000);
});

describe('the relay bookkeeping of one worker, with large messages', () => {
  it('is backed up once more than 4 MiB wait unwritten, however few messages, and caught up once they are written', async () => {
    const worker = pod.idleWorker(60_000);
    await until(() => (worker.heardFrom ? true : undefined), 'its first heartbeat', 10_000);
    process.kill(worker.pid, 'SIGSTOP');
    pod.stopped.push(worker.pid);
    let stalled: string | undefined;
    worker.on('stalled', (why) => {
      stalled = why;
    });
    const payload = new Uint8Array(3 * mib);
    for (let i = 0; i < 20 && worker.backedUpSince === undefined && stalled === undefined; i++)
      worker.send({ type: 'bus', message: { topic: 't', payload } });
    // before: 11 messages (33 MiB) and stalled, never backed up
    expect(stalled).toBeUndefined();
    expect(worker.backedUpSince).toBeDefined();
    expect(worker.backlog.messages).toBeLessThanOrEqual(3);
    expect(worker.backlog.bytes).toBeGreaterThan(relayLowWaterBytes);
    const caughtUp = once(worker, 'backlog');
    process.kill(worker.pid, 'SIGCONT');
    expect(await caughtUp).toEqual([false]);
    expect(worker.backlog.bytes).toBeLessThanOrEqual(relayLowWaterBytes);
  });
});
