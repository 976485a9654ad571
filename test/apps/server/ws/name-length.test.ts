import { describe, expect, it } from 'vitest';
import { IpcHistory } from '../../../../apps/server/ws/ipc-history.js';
import { HubTestBed, json, podHistoryChannels } from './helpers.js';

/**
 * Channel and room names are kept as keys: in the hub's indexes, in every
 * node's presence and in the channel history — the supervisor's pod-wide one
 * too, which holds up to 10,000 channel names whatever their payloads. A name
 * as long as a message (512 KiB) would let one client pin gigabytes there.
 */

const bed = new HubTestBed();

type ErrorBody = { code: string; message: string; channel?: string; room_id?: string };

const errors = (c: { of(type: string): Array<{ data: Uint8Array }> }) =>
  c.of('error').map((m) => json(m as never) as ErrorBody);

describe('channel and room names a client sends', () => {
  for (const codec of ['json', 'protobuf', 'flatbuffers', 'msgpack']) {
    it(`${codec}: a subscribe, join_room or publish naming more than maxNameLength characters is refused with HYP_E_WS_NAME_TOO_LONG; nothing is kept and the connection stays`, async () => {
      const { history, channels } = podHistoryChannels(1);
      const served = await bed.serve({
        maxNameLength: 64,
        sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[0] }),
      });
      const long = 'x'.repeat(65);
      const c = await bed.connect(codec);
      c.subscribe(long, '');
      c.join(long);
      c.send({ type: 'publish', channel: long, data: Buffer.from('"kept?"') });
      await c.until((x) => x.of('error').length === 3);
      for (const e of errors(c)) {
        expect(e.code).toBe('HYP_E_WS_NAME_TOO_LONG');
        expect(e.message).toMatch(/of 65 characters is longer than 64/);
      }
      // each names what it refused, so the client can tell which request failed
      expect(errors(c).map((e) => e.channel ?? `room:${e.room_id}`)).toEqual([long, `room:${long}`, long]);
      expect(served.hub.subscribers(long)).toBe(0);
      expect(served.hub.members(long)).toEqual([]);
      // the connection still works, and a name at the limit is taken
      const atLimit = 'y'.repeat(64);
      c.subscribe(atLimit, '');
      await c.until((x) => x.of('subscribed').length === 1);
      c.send({ type: 'publish', channel: atLimit, data: Buffer.from('"ok"') });
      await c.until((x) => x.of('message').length === 1);
      expect(json(c.of('message')[0]!)).toBe('ok');
      expect(c.closed).toBeUndefined();
      // the refused publish never reached the pod-wide history: only the accepted channel is there
      expect(history.channels).toBe(1);
    });
  }

  it('the default bound is 1024 characters', async () => {
    const served = await bed.serve();
    const c = await bed.connect('json');
    c.subscribe('n'.repeat(1024), '');
    c.join('r'.repeat(1025));
    await c.until((x) => x.of('subscribed').length === 1 && x.of('error').length === 1);
    expect(errors(c)[0]!.message).toMatch(/room name of 1025 characters is longer than 1024/);
    expect(served.hub.subscribers('n'.repeat(1024))).toBe(1);
  });

  it('a maxNameLength below 1 is refused when the hub is made', async () => {
    await expect(bed.serve({ maxNameLength: 0 })).rejects.toThrow(/maxNameLength/);
  });
});
