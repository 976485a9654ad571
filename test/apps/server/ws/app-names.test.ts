/**
 * Names the app hands the hub (`hub.publish`, `toRoom`, `sendTo`, and the
 * app-side `subscribe` / `joinRoom`) obey the rule the codecs apply to
 * names from clients: no lone surrogate. One has no UTF-8 form, so
 * "\ud800", "\udfff" and "\ufffd" would share a Redis key, and a json
 * client would refuse the delivery as undecodable. A channel taken from a
 * request body (JSON.parse makes lone surrogates from escapes) is the case.
 */
import { describe, expect, it } from 'vitest';
import type { Hub } from '../../../../apps/server/ws/hub.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { HubTestBed, text, thrownHypError } from './helpers.js';

const bed = new HubTestBed();

describe('names from the app', () => {
  const calls: Array<[string, (hub: Hub) => unknown, string]> = [
    ['hub.publish', (hub) => hub.publish('orders-\ud800', 'x'), 'channel'],
    ['hub.toRoom', (hub) => hub.toRoom('\udfff-room', 'x'), 'room'],
    ['hub.sendTo', (hub) => hub.sendTo('client-\ud800', 'x'), 'client id'],
  ];
  it.each(calls)(
    '%s with a lone surrogate: HYP_E_WS_NAME_INVALID (400), nothing sent',
    async (_what, f, kind) => {
      const { hub } = await bed.serve();
      const err = thrownHypError(() => f(hub));
      expect(isHypError(err)).toBe(true);
      expect(err).toMatchObject({ code: 'HYP_E_WS_NAME_INVALID', status: 400 });
      expect((err as Error).message).toContain(kind);
      expect((err as Error).message).toContain('\\ud');
    },
  );

  it('names with surrogate pairs (astral characters) are names like any other', async () => {
    const { hub } = await bed.serve();
    const c = await bed.connect('json');
    c.subscribe('orders-😀', '');
    await c.until((x) => x.of('subscribed').length === 1);
    hub.publish('orders-😀', 'hello');
    const [m] = await c.nextOf('message');
    expect(m!.channel).toBe('orders-😀');
    expect(text(m!)).toBe('"hello"');
  });
});
