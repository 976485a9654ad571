import { describe, expect, it } from 'vitest';
import { HubTestBed } from './helpers.js';

/**
 * `drain.websocket_spread` can be longer than the time a drain has: the
 * worker's own drain when its supervisor is gone has 1 s, and an operator may
 * set a spread above `drain.timeout`. The close frames must still all go out
 * before the deadline: a client terminated at the deadline sees 1006 and no
 * reconnect hint, as after a crash.
 */

const bed = new HubTestBed();

describe('drain with a spread longer than the time left', () => {
  it('every client still gets 1001 with a reconnect hint, none is terminated at the deadline', async () => {
    const served = await bed.serve();
    const clients = await Promise.all(Array.from({ length: 20 }, () => bed.connect('json')));
    await served.hub.drain({ spreadMs: 60_000, deadline: Date.now() + 1_500 });
    for (const c of clients) await c.until((x) => x.closed !== undefined);
    expect(clients.map((c) => c.closed!.code)).toEqual(clients.map(() => 1001));
    for (const c of clients) expect(c.closed!.reason).toMatch(/^reconnect;delay=\d+$/);
    expect(served.hub.clients()).toBe(0);
  });
});
