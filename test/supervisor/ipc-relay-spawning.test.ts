/**
 * A worker of a roll that is still loading its app has no clients, but the
 * supervisor delivered the pod's channel history to it from its spawn: with
 * an app whose start blocks the event loop, those deliveries backed it up
 * and the supervisor held every serving worker's publishing clients until it
 * had loaded (a roll of an app taking 3 s to start stopped the pod's
 * deliveries for 3 s, on every rollout). Now a worker gets history
 * deliveries from the first thing it sends that needs them (ready, a
 * publish, a subscribe's recovery request), which the supervisor reads
 * before anything that could depend on them.
 */
import { describe, expect, it } from 'vitest';
import { fixtureApp, until } from '../helpers/supervisor.js';
import { metric, relayPod } from './relay-helpers.js';

const pod = relayPod();

describe('a roll whose new worker is still loading its app', () => {
  it("does not hold the serving workers' publishers: every publish is delivered while it loads, and it serves the channel once ready", async () => {
    const running = await pod.start({
      app: fixtureApp('ws-relay-slow-roll'),
      workers: 1,
      env: { HYP_TEST_LOAD_MS: '20000' },
      sets: ['supervisor.heartbeat_timeout=120s', 'supervisor.ready_timeout=120s'],
    });
    const subscriber = await pod.client(running.httpPort, true);
    const pub = await pod.client(running.httpPort, false);
    running.proc.kill('SIGHUP');
    await running.waitFor(
      (s) => [...s.workers, ...s.other_workers].some((w) => w.generation === 2),
      'a worker of generation 2',
    );

    // 3,000 publishes of 1 KB (3 MB: far past what backs a channel up) while it loads for 20 s
    const pad = 'x'.repeat(1000);
    for (let i = 0; i < 3000; i++) pub.publish(`${i}`, pad);
    // before: held until the new worker had loaded (20 s)
    await until(() => (subscriber.ids.length >= 3000 ? true : undefined), '3,000 deliveries', 12_000);
    const status = await running.status();
    const loading = [...status.workers, ...status.other_workers].find((w) => w.generation === 2);
    expect(loading?.state).toBe('spawning');
    expect(subscriber.ids).toEqual(Array.from({ length: 3000 }, (_, i) => `${i}`));

    // once loaded it is ready, takes over, and delivers the channel (history from its ready on)
    await running.waitFor(
      (s) =>
        s.generation === 2 && s.other_workers.length === 0 && s.workers.every((w) => w.state === 'ready'),
      'generation 2 alone',
      60_000,
    );
    const later = await pod.client(running.httpPort, true);
    const pub2 = await pod.client(running.httpPort, false);
    pub2.publish('after');
    await until(() => (later.ids.includes('after') ? true : undefined), 'a delivery on generation 2');
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(0);
  }, 90_000);
});
