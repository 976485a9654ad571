import { describe, expect, it } from 'vitest';
import { IpcHistory } from '../../../../apps/server/ws/ipc-history.js';
import { HubTestBed, podHistoryChannels } from './helpers.js';

/**
 * What a connection keeps per channel must go with the channel: a client
 * cycling through channels (subscribe with an offset, unsubscribe, next
 * channel) must not grow its connection's state without bound.
 */

const bed = new HubTestBed();

describe('per-channel state of a connection', () => {
  it('a resumed channel that is unsubscribed leaves nothing behind on the connection', async () => {
    const { history, channels } = podHistoryChannels(1);
    const served = await bed.serve({ sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[0] }) });
    const c = await bed.connect('json', { headers: { 'X-Client-ID': 'cycler' } });
    const from = `${history.epoch}-0`;
    for (let i = 0; i < 50; i++) {
      c.subscribe(`ch${i}`, from);
      await c.until((x) => x.of('subscribed').length === i + 1);
      c.send({ type: 'unsubscribe', data: c.codec.encodeChannelRequest({ channel: `ch${i}`, offset: '' }) });
    }
    // a last round trip: every unsubscribe before it has been handled
    c.subscribe('last');
    await c.until((x) => x.of('subscribed').length === 51);
    const client = served.hub.client('cycler')!;
    expect(client.replayedUpTo?.size ?? 0).toBe(0);
    expect(client.recovering?.size ?? 0).toBe(0);
    expect(client.channels).toEqual(['last']);
  });
});
