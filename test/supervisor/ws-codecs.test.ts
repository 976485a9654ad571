/**
 * The four codecs on one channel through the real server: one JSON publish
 * reaches a json, a protobuf, a flatbuffers and a msgpack subscriber, each in
 * its own wire format. The frames are read back with the format's own
 * library (protobufjs with the committed .proto, the flatbuffers runtime,
 * @msgpack/msgpack, JSON.parse), not with the hub's codecs.
 */
import { join } from 'node:path';
import { decode as decodeMsgpack } from '@msgpack/msgpack';
import { ByteBuffer } from 'flatbuffers';
import protobuf from 'protobufjs';
import { afterEach, describe, expect, it } from 'vitest';
import type { CodecName } from '../../apps/client/index.js';
import { demoApp, type Running, root, startSupervisor, until } from '../helpers/supervisor.js';
import { type Frame, TestClient } from './ws-helpers.js';

let sup: Running | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await sup?.stop();
  sup = undefined;
});

interface Wire {
  type: string;
  channel: string;
  data: string;
  clientId: string;
}

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

function readFlatbuffers(bytes: Buffer): Wire {
  const bb = new ByteBuffer(new Uint8Array(bytes));
  const table = bb.readInt32(bb.position()) + bb.position();
  const field = (slot: number) => bb.__offset(table, 4 + 2 * slot);
  const str = (slot: number) => (field(slot) ? String(bb.__string(table + field(slot))) : '');
  let data = '';
  if (field(2)) {
    const start = bb.__vector(table + field(2));
    data = text(bb.bytes().subarray(start, start + bb.__vector_len(table + field(2))));
  }
  return { type: str(0), channel: str(1), data, clientId: str(4) };
}

describe('four codecs on one channel through the real server', () => {
  it('a JSON publish reaches json, protobuf, flatbuffers and msgpack subscribers, each in its own format', async () => {
    sup = await startSupervisor({ app: demoApp, workers: 2, sets: ['tcp.echo.addr=127.0.0.1:0'] });
    const proto = await protobuf.load(join(root, 'test', 'fixtures', 'ws', 'message.proto'));
    const WsMessage = proto.lookupType('hyp.ws.WsMessage');
    const readers: Record<CodecName, (f: Frame) => Wire> = {
      json: (f) => {
        const m = JSON.parse(f.bytes.toString('utf8')) as Record<string, unknown>;
        return {
          type: String(m.type),
          channel: String(m.channel),
          data: JSON.stringify(m.data),
          clientId: String(m.client_id),
        };
      },
      protobuf: (f) => {
        const m = WsMessage.toObject(WsMessage.decode(f.bytes), { bytes: Array }) as Record<string, unknown>;
        return {
          type: String(m.type),
          channel: String(m.channel),
          data: text(Uint8Array.from(m.data as number[])),
          clientId: String(m.clientId),
        };
      },
      flatbuffers: (f) => readFlatbuffers(f.bytes),
      msgpack: (f) => {
        const m = decodeMsgpack(f.bytes, { useBigInt64: true }) as Record<string, unknown>;
        return {
          type: String(m.type),
          channel: String(m.channel),
          data: text(m.data as Uint8Array),
          clientId: String(m.client_id),
        };
      },
    };
    const names = Object.keys(readers) as CodecName[];
    const subscribers = names.map(
      (codec) => new TestClient(sup!.httpPort, { codec, clientId: `sub-${codec}` }),
    );
    const publisher = new TestClient(sup.httpPort, { codec: 'json', clientId: 'json-publisher' });
    clients.push(...subscribers, publisher);
    for (const c of [...subscribers, publisher]) await c.connect();
    for (const c of subscribers) await c.subscribe('codecs');

    publisher.ws.publish('codecs', { id: 'one', note: 'héllo' });
    await until(
      () => (subscribers.every((c) => c.ids('codecs').length === 1) ? true : undefined),
      'every subscriber',
    );
    for (const [i, c] of subscribers.entries()) {
      const codec = names[i]!;
      const delivery = c.frames
        .map((f) => ({ f, wire: readers[codec](f) }))
        .find((x) => x.wire.type === 'message');
      expect(delivery, codec).toBeDefined();
      expect(delivery!.f.binary, codec).toBe(codec !== 'json');
      expect(delivery!.wire, codec).toEqual({
        type: 'message',
        channel: 'codecs',
        data: JSON.stringify({ id: 'one', note: 'héllo' }),
        clientId: 'json-publisher',
      });
      expect(c.errors, codec).toEqual([]);
    }
  });
});
