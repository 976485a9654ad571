/**
 * A refusal of a room request (`join_room`, `leave_room`, `presence`) names
 * the request (`request`) and, when its data holds one, the room (`room_id`),
 * whatever the reason: a client with a join and a member-list request of one
 * room under way tells which one was refused. The fields before it are as
 * they were (old clients read the same frames), and refusals of other
 * requests carry no `request`. Real hub on loopback, raw clients.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../../../apps/server/ws/envelope.js';
import { Security } from '../../../../apps/server/ws/security.js';
import { HubTestBed, json, type TestClient } from './helpers.js';
import { SpecClaims } from './spec-claims.js';

const bed = new HubTestBed();

/** The error frames' bodies `c` received, in order, once there are `count`. */
async function errors(c: TestClient, count: number): Promise<unknown[]> {
  await c.until((x) => x.of('error').length >= count);
  return c.of('error').map((m: Envelope) => json(m));
}

describe('refusals of room requests name the request and the room', () => {
  it('canJoin, the name bound and invalid data: room_id and request; a subscribe or publish refusal: no request', async () => {
    await bed.serve({
      canJoin: (_c, room) => room !== 'vip',
      canSubscribe: (_c, channel) => channel !== 'secret',
      canPublish: () => false,
      maxNameLength: 8,
    });
    const c = await bed.connect();
    c.join('vip');
    c.send({ type: 'presence', data: c.codec.encodeRoomRequest({ roomId: 'vip' }) });
    c.join('a-long-room');
    c.send({ type: 'leave_room', data: new TextEncoder().encode('{"room_id":""}') });
    c.subscribe('secret');
    c.send({ type: 'publish', channel: 'news', data: new TextEncoder().encode('"x"') });
    const got = await errors(c, 6);
    expect(got).toEqual([
      {
        code: 'HYP_E_WS_FORBIDDEN_CHANNEL',
        message: expect.any(String),
        room_id: 'vip',
        request: 'join_room',
      },
      {
        code: 'HYP_E_WS_FORBIDDEN_CHANNEL',
        message: expect.any(String),
        room_id: 'vip',
        request: 'presence',
      },
      {
        code: 'HYP_E_WS_NAME_TOO_LONG',
        message: expect.any(String),
        room_id: 'a-long-room',
        request: 'join_room',
      },
      // no room to name: the data does not decode (its key path is named)
      { code: 'HYP_E_WS_CONTROL', message: expect.any(String), path: 'data.room_id', request: 'leave_room' },
      { code: 'HYP_E_WS_FORBIDDEN_CHANNEL', message: expect.any(String), channel: 'secret' },
      { code: 'HYP_E_WS_CONTROL', message: expect.any(String) },
    ]);
  });

  it('a replay claim refused (the claim store failed closed): the room request is named, other frames are not', async () => {
    const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
    const claims = new SpecClaims();
    await bed.serve({ security: { keys, replayWindowMs: 30_000, replayClaims: claims } });
    const c = await bed.connect('msgpack', { security: new Security({ keys }) });
    claims.plan = ['store down', 'store down', 'store down'];
    c.join('lobby');
    c.send({ type: 'presence', data: c.codec.encodeRoomRequest({ roomId: 'lobby' }) });
    c.subscribe('news');
    const got = await errors(c, 3);
    expect(got).toEqual([
      { code: 'HYP_E_WS_REPLAY', message: expect.any(String), room_id: 'lobby', request: 'join_room' },
      { code: 'HYP_E_WS_REPLAY', message: expect.any(String), room_id: 'lobby', request: 'presence' },
      { code: 'HYP_E_WS_REPLAY', message: expect.any(String) },
    ]);
    expect(bed.served!.hub.members('lobby')).toEqual([]);
  });
});
