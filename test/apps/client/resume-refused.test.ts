/**
 * Subscribes the hub refuses: the client's bookkeeping after each refusal
 * code, and the resume the hub refuses only for now (HYP_E_WS_RECOVERY_BUSY).
 * Real hubs in-process, loopback only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { IpcHistory } from '../../../apps/server/ws/ipc-history.js';
import { eventually, holdingPod } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';

afterEach(closeAll);

describe('a resume the hub refuses as busy', () => {
  it('is asked again once the replay under way ends: resubscribing from an offset right after leaving the channel gets every message', async () => {
    const pod = holdingPod();
    const served = await hub({ sharedHistory: new IpcHistory({ topic: '/ws', channel: pod.channel }) });
    for (const n of [1, 2, 3]) served.hub.publish('ch', n);
    const c = client(served.url);
    await c.ws.connect();
    const from = `${pod.history.epoch}-0`;
    const leave = c.subscribe('ch', from);
    await eventually(() => pod.held.length === 1);
    // Left and taken again while the first replay is still under way on this connection.
    leave();
    c.subscribe('ch', from);
    await eventually(() => c.errors.some((e) => e.code === 'HYP_E_WS_RECOVERY_BUSY'));
    expect(c.errors.map((e) => [e.code, e.channel])).toEqual([['HYP_E_WS_RECOVERY_BUSY', 'ch']]);
    // The first replay ends (its subscription is gone: nothing of it is delivered).
    pod.release();
    // Before: the refused resume was never asked again, and nothing arrived.
    await eventually(() => pod.held.length === 1);
    pod.release();
    await eventually(() => c.got('ch').length === 3);
    expect(c.got('ch')).toEqual([1, 2, 3]);
    served.hub.publish('ch', 4);
    await eventually(() => c.got('ch').length === 4);
    expect(c.got('ch')).toEqual([1, 2, 3, 4]);
  });

  it('is not asked again once the channel is left', async () => {
    const pod = holdingPod();
    const served = await hub({ sharedHistory: new IpcHistory({ topic: '/ws', channel: pod.channel }) });
    served.hub.publish('ch', 1);
    const c = client(served.url);
    await c.ws.connect();
    const from = `${pod.history.epoch}-0`;
    c.subscribe('ch', from)();
    const again = c.subscribe('ch', from);
    await eventually(() => c.errors.length === 1);
    again();
    pod.release();
    // Longer than the first retry's delay: a retry would have asked the pod again.
    await new Promise((r) => setTimeout(r, 400));
    expect(pod.held).toEqual([]);
    expect(served.hub.subscribers('ch')).toBe(0);
  });
});

describe('a subscribe the hub refuses for good', () => {
  it.each([
    ['HYP_E_WS_NAME_TOO_LONG', { maxNameLength: 8 }],
    ['HYP_E_WS_FORBIDDEN_CHANNEL', { canSubscribe: () => false }],
  ] as const)(
    '%s: it never started, so a reconnect reports no possible loss for it',
    async (code, options) => {
      const served = await hub(options);
      const f = await frontOf(served);
      const c = client(f.url);
      await c.ws.connect();
      c.subscribe('channel-nine');
      await eventually(() => c.errors.length === 1);
      expect(c.errors.map((e) => [e.code, e.channel])).toEqual([[code, 'channel-nine']]);
      // Cut before anything acknowledged it; the reconnect asks again and is refused again.
      f.cut();
      await eventually(() => c.opens === 2 && c.errors.length === 2);
      // Before: the second error was HYP_E_WS_RECOVERY_FAILED, a loss on a channel never subscribed.
      expect(c.errors.map((e) => e.code)).toEqual([code, code]);
    },
  );
});
