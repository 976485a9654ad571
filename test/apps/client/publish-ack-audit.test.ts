/**
 * `publishAck` (hyp/client) pushed where it is fragile: a close or a timeout
 * while the publish is being sealed (WebCrypto is asynchronous) is reported
 * once, through the promise, never a second time as an `error` event.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';

afterEach(closeAll);

const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };

/** The client's chain of frames being sealed, settled. */
async function sealed(ws: unknown): Promise<void> {
  for (let i = 0; i < 3; i++) await (ws as { outbound: Promise<void> }).outbound;
}

describe('publishAck under the security pipeline', () => {
  it('close() while it is being sealed: rejected with HYP_E_WS_ACK_CLOSED, no HYP_E_WS_SEAL event as well', async () => {
    const served = await hub({ security: { keys } });
    const a = client(served.url, { clientId: 'alice', security: keys });
    await a.ws.connect();
    const outcome = a.ws.publishAck('news', 'x', { id: 's-1' }).catch((err: { code: string }) => err.code);
    a.ws.close();
    expect(await outcome).toBe('HYP_E_WS_ACK_CLOSED');
    await sealed(a.ws);
    expect(a.errors).toEqual([]);
  });

  it('a timeout while it is being sealed and the connection lost: one rejection, no HYP_E_WS_SEAL event', async () => {
    const served = await hub({ security: { keys } });
    const f = await frontOf(served);
    const a = client(f.url, { clientId: 'alice', security: keys });
    await a.ws.connect();
    const outcome = a.ws
      .publishAck('news', 'x', { id: 's-2', timeoutMs: 1 })
      .catch((err: { code: string }) => err.code);
    f.cut();
    expect(await outcome).toBe('HYP_E_WS_ACK_TIMEOUT');
    await sealed(a.ws);
    await eventually(() => a.opens === 2);
    await sealed(a.ws);
    expect(a.errors.filter((e) => e.code === 'HYP_E_WS_SEAL')).toEqual([]);
  });
});

describe('publishAck in every codec with the security pipeline on', () => {
  for (const codec of ['json', 'protobuf', 'flatbuffers', 'msgpack'] as const) {
    it(`${codec}: acknowledged with its offset, refused with the hub's code and the id`, async () => {
      const served = await hub({ security: { keys }, canPublish: (_c, channel) => channel !== 'staff' });
      const seen: Array<[string, string | undefined]> = [];
      const w = client(served.url, { codec, clientId: 'watcher', security: keys });
      w.ws.subscribe('news', (m) => seen.push([m.clientId, m.id]));
      await w.ws.connect();
      await eventually(() => w.ws.offset('news') !== undefined);
      const a = client(served.url, { codec, clientId: 'alice', security: keys });
      await a.ws.connect();
      const id = `${codec}-${'z'.repeat(56)}`.slice(0, 64);
      const ack = await a.ws.publishAck('news', { n: 1 }, { id });
      expect(ack.offset).not.toBe('');
      const refused = await a.ws.publishAck('staff', 'x').catch((err: { code: string; id: string }) => err);
      expect(refused).toMatchObject({ code: 'HYP_E_WS_CONTROL', channel: 'staff' });
      await eventually(() => seen.length === 1);
      expect(seen).toEqual([['alice', id]]);
      expect(a.errors).toEqual([]);
    });
  }
});
