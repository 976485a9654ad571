/**
 * A protobuf frame whose known field carries the wrong wire type (a peer
 * whose schema says `int64 id = 7`, a hand-rolled encoder) is refused as
 * HYP_E_WS_DECODE naming the field and its byte, never read as if the field
 * were absent: a publish whose id was dropped that way went out as a plain
 * publish, delivered and never acknowledged, and its client waited out its
 * timeout. Real hub, real sockets.
 */
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { protobufCodec } from '../../../../../apps/server/ws/codecs/protobuf.js';
import { HubTestBed, json } from '../helpers.js';

const bed = new HubTestBed();

/** WsMessage{type: 'publish', channel: 'ch'} and then what `more` writes. */
function publishFrame(more: (w: protobuf.Writer) => protobuf.Writer): Uint8Array {
  return more(
    protobuf.Writer.create()
      .uint32((1 << 3) | 2)
      .string('publish')
      .uint32((2 << 3) | 2)
      .string('ch'),
  ).finish();
}

describe('protobuf: a known field of the wrong wire type', () => {
  for (const [what, write] of [
    ['id (7) as a varint', (w: protobuf.Writer) => w.uint32((7 << 3) | 0).uint32(42)],
    ['id (7) as fixed32', (w: protobuf.Writer) => w.uint32((7 << 3) | 5).fixed32(42)],
    ['id (7) as fixed64', (w: protobuf.Writer) => w.uint32((7 << 3) | 1).fixed64(42)],
    ['offset (6) as a varint', (w: protobuf.Writer) => w.uint32((6 << 3) | 0).uint32(1)],
    ['timestamp (4) as bytes', (w: protobuf.Writer) => w.uint32((4 << 3) | 2).string('1700000000')],
    ['data (3) as a varint', (w: protobuf.Writer) => w.uint32((3 << 3) | 0).uint32(7)],
  ] as const) {
    it(`${what}: HYP_E_WS_DECODE naming the field; nothing delivered, the connection stays`, async () => {
      await bed.serve();
      const reader = await bed.connect('json');
      reader.subscribe('ch');
      await reader.nextOf('subscribed');
      const c = await bed.connect('protobuf');
      c.ws.send(publishFrame(write));
      const [err] = await c.nextOf('error');
      const body = json(err!) as { code: string; message: string };
      expect(body.code).toBe('HYP_E_WS_DECODE');
      expect(body.message).toMatch(/field \d \(\w+\) has wire type \d, expected \d at byte \d+/);
      // the connection still serves: a well-formed publish after it is delivered, and only it
      c.send({ type: 'publish', channel: 'ch', data: Buffer.from('"next"'), id: 'n-1' });
      await c.nextOf('published');
      await reader.nextOf('message');
      expect(reader.of('message').map((m) => json(m))).toEqual(['next']);
    });
  }

  it('a subscribe whose offset (ChannelRequest field 2) is a varint: HYP_E_WS_CONTROL, not a subscription from the head', async () => {
    await bed.serve();
    const c = await bed.connect('protobuf');
    const request = protobuf.Writer.create()
      .uint32((1 << 3) | 2)
      .string('ch')
      .uint32((2 << 3) | 0)
      .uint32(5)
      .finish();
    c.send({ type: 'subscribe', data: Buffer.from(request) });
    const [err] = await c.nextOf('error');
    const body = json(err!) as { code: string; message: string };
    expect(body.code).toBe('HYP_E_WS_CONTROL');
    expect(body.message).toMatch(/field 2 \(offset\) has wire type 0, expected 2 \(byte 4\)/);
    expect(c.of('subscribed')).toEqual([]);
    expect(bed.served!.hub.subscribers('ch')).toBe(0);
  });

  it('the codec alone: the byte offset is the tag of the bad field', () => {
    const bytes = publishFrame((w) => w.uint32((7 << 3) | 0).uint32(42));
    expect(() => protobufCodec.unmarshal(bytes)).toThrow(
      /field 7 \(id\) has wire type 0, expected 2 at byte 13/,
    );
  });

  it('unknown fields of any wire type are still skipped (HypGo peers, newer hubs)', () => {
    const bytes = publishFrame((w) =>
      w
        .uint32((9 << 3) | 0)
        .uint32(1)
        .uint32((10 << 3) | 5)
        .fixed32(3),
    );
    expect(protobufCodec.unmarshal(bytes)).toMatchObject({ type: 'publish', channel: 'ch' });
  });
});
