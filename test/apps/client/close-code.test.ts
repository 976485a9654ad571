/**
 * `close(code, reason)` takes what every WebSocket takes — code 1000 or
 * 3000–4999, a reason of at most 123 UTF-8 bytes — and refuses anything
 * else with a RangeError before it changes any state. Before, a browser's
 * socket threw on `close(1001)` (and `ws` on `close(1005)`) after the client
 * had marked itself stopped: the socket stayed open and delivering,
 * `connected` was true, a publishAck rejected HYP_E_WS_ACK_CLOSED at once,
 * and nothing reconnected. Real hubs in-process, loopback only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../server/ws/helpers.js';
import { client, closeAll, hub } from './delivery.js';

afterEach(closeAll);

function thrown(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

describe('close(code, reason)', () => {
  for (const [code, reason] of [
    [1001, ''],
    [1005, ''],
    [2999, ''],
    [5000, ''],
    [3000.5, ''],
    [1000, 'é'.repeat(62)], // 124 bytes of UTF-8
  ] as const) {
    it(`close(${code}, ${reason.length} characters) throws a RangeError and leaves the client as it was`, async () => {
      const served = await hub();
      const c = client(served.url, { clientId: 'closer' });
      const closes: number[] = [];
      c.ws.on('close', (n) => closes.push(n));
      c.subscribe('news');
      await c.ws.connect();
      const err = thrown(() => c.ws.close(code, reason));
      expect(err).toBeInstanceOf(RangeError);
      expect(err!.message).toMatch(reason ? /123 bytes/ : /1000 or 3000.4999/);
      expect(c.ws.connected).toBe(true);
      // still usable: an acknowledged publish goes through, deliveries keep coming
      const ack = await c.ws.publishAck('news', 'still here', { timeoutMs: 5_000 });
      expect(ack.offset).not.toBe('');
      await eventually(() => c.got('news').length === 1);
      expect(closes).toEqual([]);
      c.ws.close(4001, 'bye');
      await eventually(() => closes.length === 1);
      expect(closes).toEqual([4001]);
    });
  }

  it('1000 and 3000–4999 with a reason of 123 bytes close for good', async () => {
    const served = await hub();
    for (const code of [1000, 3000, 4999]) {
      const c = client(served.url);
      const closes: number[] = [];
      c.ws.on('close', (n) => closes.push(n));
      await c.ws.connect();
      c.ws.close(code, 'é'.repeat(61) + 'x'); // 123 bytes
      await eventually(() => closes.length === 1);
      expect(closes).toEqual([code]);
      expect(c.ws.connected).toBe(false);
    }
  });
});
