import { describe, expect, it } from 'vitest';
import { HubTestBed, json } from './helpers.js';

/**
 * An invalid control request is answered with HYP_E_WS_CONTROL naming the
 * type the client sent ("invalid control message unsubscribe: ..."), so the
 * client can tell which of its requests failed.
 */

const bed = new HubTestBed();
const types = ['subscribe', 'unsubscribe', 'join_room', 'leave_room', 'presence'];

for (const codec of ['json', 'protobuf', 'msgpack', 'flatbuffers']) {
  describe(`${codec}: control errors`, () => {
    // missing name, and data that does not decode at all
    const bodies: Array<[string, Uint8Array]> = [
      ['empty', codec === 'protobuf' ? new Uint8Array() : Buffer.from('{}')],
      ['undecodable', codec === 'protobuf' ? new Uint8Array([0x0a, 0x05, 0x61]) : Buffer.from('[1,')],
    ];
    for (const [what, data] of bodies) {
      it(`name the type received (${what} data)`, async () => {
        await bed.serve();
        const c = await bed.connect(codec);
        for (const type of types) c.send({ type, data });
        const errors = await c.nextOf('error', types.length);
        const messages = errors.map((e) => json(e) as { code: string; message: string });
        expect(messages.map((m) => m.code)).toEqual(types.map(() => 'HYP_E_WS_CONTROL'));
        expect(messages.map((m) => m.message.split(':')[0])).toEqual(
          types.map((type) => `invalid control message ${type}`),
        );
        expect(c.closed).toBeUndefined();
      });
    }
  });
}
