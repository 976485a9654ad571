/**
 * The supervisor holds the other workers' publishing clients while one
 * worker is backed up (ipc-relay-hold.test.ts), but a hold cannot reach the
 * backed-up worker itself: it would wait behind that worker's own backlog.
 * With a channel history every publish comes back to its publisher through
 * the supervisor, so the worker that both publishes and fans out is the one
 * that backs up: before, one worker with 40 subscribers and 8 clients
 * publishing 4 KB messages had 15-22 MiB waiting for it in the supervisor
 * and was cut off at 32 MiB (every client dropped). Now its IpcFlow counts
 * its own publishes not yet back and holds its publishing clients itself.
 */
import { describe, expect, it } from 'vitest';
import { IpcFlow } from '../../apps/server/ws/ipc-flow.js';
import { fixtureApp, until } from '../helpers/supervisor.js';
import { fakeChannel, metric, mib, relayPod } from './relay-helpers.js';

const pod = relayPod();

describe('a worker that both publishes and fans out (channel with history)', () => {
  it('holds its own publishing clients while its publishes are slow to come back: little waits for it in the supervisor, it is not cut off, and every subscriber gets every message in order', async () => {
    const running = await pod.start({
      app: fixtureApp('ws-relay'),
      workers: 1,
      sets: ['supervisor.heartbeat_timeout=120s', 'websocket.send_buffer_limit=256MiB'],
    });
    const subscribers = [];
    for (let i = 0; i < 40; i++) subscribers.push(await pod.client(running.httpPort, true, i === 0));
    const publishers = [];
    for (let i = 0; i < 8; i++) publishers.push(await pod.client(running.httpPort, false));

    // 4 KB publishes from 8 clients for at most 10 s, each as fast as its socket takes them
    const pad = 'x'.repeat(4000);
    let sent = 0;
    let maxBacklog = 0;
    let sampledAt = 0;
    const end = Date.now() + 10_000;
    while (Date.now() < end && sent < 200_000) {
      for (const [p, pub] of publishers.entries())
        if (pub.ws.bufferedAmount < mib) for (let k = 0; k < 25; k++) pub.publish(`${p}-${sent++}`, pad);
      await new Promise((r) => setImmediate(r));
      if (Date.now() - sampledAt >= 250) {
        sampledAt = Date.now();
        maxBacklog = Math.max(
          maxBacklog,
          (await metric(running, 'hyp_supervisor_ws_relay_backlog_bytes')) ?? 0,
        );
      }
    }
    const cutoffs = await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total');
    console.log(
      `self relay: ${sent} 4 KB publishes from 8 clients to 40 subscribers on one worker; at most ${(maxBacklog / mib).toFixed(1)} MiB waited for it (sampled); cut-offs ${cutoffs}`,
    );
    // before: 15-22 MiB waited, and a cut-off at 32 MiB closed every client
    expect(cutoffs).toBe(0);
    expect(maxBacklog).toBeLessThan(4 * mib);

    for (const [i, s] of subscribers.entries())
      await until(
        () => (s.deliveries() >= sent ? true : undefined),
        `subscriber ${i}: ${sent} deliveries`,
        120_000,
      );
    const first = subscribers[0]!.ids;
    expect(first.length).toBe(sent);
    // each publisher's messages in the order it sent them
    const last = new Map<string, number>();
    for (const id of first) {
      const [p, n] = id.split('-') as [string, string];
      expect(Number(n)).toBeGreaterThan(last.get(p) ?? -1);
      last.set(p, Number(n));
    }
    expect(await metric(running, 'hyp_supervisor_ws_relay_backlog_bytes')).toBe(0);
  }, 180_000);
});

const payload = new Uint8Array(4096);
const publish = { type: 'history-publish', topic: '/ws', channel: 'c', payload } as const;
const own = { type: 'history', topic: '/ws', channel: 'c', offset: '1-1', payload, own: true } as const;

describe("a worker's IPC flow and its own history publishes", () => {
  it('is congested once more than 1 MiB of its publishes are not back yet, until at most 16 are', () => {
    const ipc = fakeChannel({ writeAtOnce: true });
    const flow = new IpcFlow(ipc.channel);
    // one round trip shows the supervisor marks the publisher's copy
    flow.send(publish);
    ipc.fromSupervisor(own);
    let sends = 0;
    while (!flow.congested && sends < 10_000) {
      flow.send(publish);
      sends++;
    }
    // 1 MiB of 4 KiB payloads (plus 256 bytes each, as the supervisor estimates them)
    expect(sends).toBe(Math.floor(mib / (4096 + 256)) + 1);
    let resumed = 0;
    flow.whenDrained(() => resumed++);
    // others' deliveries, and unmarked ones, do not count
    ipc.fromSupervisor({ ...own, own: undefined });
    ipc.fromSupervisor({ type: 'bus', message: { topic: 't', payload } });
    for (let i = 0; i < sends - 16 - 1; i++) ipc.fromSupervisor(own);
    expect(flow.congested).toBe(true);
    expect(resumed).toBe(0);
    ipc.fromSupervisor(own);
    expect(flow.congested).toBe(false);
    expect(resumed).toBe(1);
  });

  it('does not judge the lag before the supervisor has marked one delivery own (older supervisor code)', () => {
    const ipc = fakeChannel({ writeAtOnce: true });
    const flow = new IpcFlow(ipc.channel);
    for (let i = 0; i < 5_000; i++) flow.send(publish);
    expect(flow.congested).toBe(false);
  });

  it("stays congested while the supervisor's hold lasts, though its own publishes came back", () => {
    const ipc = fakeChannel({ writeAtOnce: true });
    const flow = new IpcFlow(ipc.channel);
    flow.send(publish);
    ipc.fromSupervisor(own);
    for (let i = 0; i < 300; i++) flow.send(publish);
    ipc.fromSupervisor({ type: 'bus-hold' });
    let resumed = 0;
    flow.whenDrained(() => resumed++);
    for (let i = 0; i < 300; i++) ipc.fromSupervisor(own);
    expect(flow.congested).toBe(true);
    ipc.fromSupervisor({ type: 'bus-release' });
    expect(resumed).toBe(1);
  });
});

describe("a worker's IPC flow and its own large history publishes", () => {
  it('is congested once more than 1 MiB of them is not back yet, however few they are, until they are back', () => {
    const ipc = fakeChannel({ writeAtOnce: true });
    const flow = new IpcFlow(ipc.channel);
    const big = new Uint8Array(3 * mib);
    flow.send({ ...publish, payload: big });
    ipc.fromSupervisor({ ...own, payload: big });
    // before: 17 of them (51 MiB, past the relay's 32 MiB cut-off) before it held anyone
    flow.send({ ...publish, payload: big });
    expect(flow.congested).toBe(true);
    flow.send({ ...publish, payload: big });
    let resumed = 0;
    flow.whenDrained(() => resumed++);
    ipc.fromSupervisor({ ...own, payload: big });
    expect(flow.congested).toBe(true);
    ipc.fromSupervisor({ ...own, payload: big });
    expect(flow.congested).toBe(false);
    expect(resumed).toBe(1);
  });
});
