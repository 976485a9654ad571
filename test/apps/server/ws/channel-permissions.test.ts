import { describe, expect, it } from 'vitest';
import type { HubClient } from '../../../../apps/server/ws/hub.js';
import { HubTestBed, json } from './helpers.js';

/**
 * Without hooks any client may subscribe to any channel and join any room:
 * a channel such as `user:alice` (direct notifications) or a room such as
 * `staff` would be readable by every client. `canSubscribe` and `canJoin`
 * let the application decide per client, as `canPublish` does for publishes.
 */

const bed = new HubTestBed();

type ErrorBody = { code: string; message: string; channel?: string; room_id?: string };

/** A client may read its own user channel only; only `admin` is staff. */
const canSubscribe = (c: HubClient, channel: string) =>
  !channel.startsWith('user:') || channel === `user:${c.id}`;
const canJoin = (c: HubClient, room: string) => room !== 'staff' || c.id === 'admin';

describe('subscribe and room permissions', () => {
  it('canSubscribe refuses a channel with HYP_E_WS_FORBIDDEN_CHANNEL naming it; nothing published there reaches that client', async () => {
    const served = await bed.serve({ canSubscribe });
    const mallory = await bed.connect('protobuf', { headers: { 'X-Client-ID': 'mallory' } });
    const alice = await bed.connect('json', { headers: { 'X-Client-ID': 'alice' } });
    mallory.subscribe('user:alice');
    mallory.subscribe('user:mallory');
    alice.subscribe('user:alice');
    await mallory.until((x) => x.of('error').length === 1 && x.of('subscribed').length === 1);
    await alice.until((x) => x.of('subscribed').length === 1);
    const err = json(mallory.of('error')[0]!) as ErrorBody;
    expect(err).toMatchObject({ code: 'HYP_E_WS_FORBIDDEN_CHANNEL', channel: 'user:alice' });
    expect(served.hub.subscribers('user:alice')).toBe(1);
    served.hub.publish('user:alice', 'for alice');
    served.hub.publish('user:mallory', 'for mallory');
    await alice.until((x) => x.of('message').length === 1);
    await mallory.until((x) => x.of('message').length === 1);
    expect(mallory.of('message').map((m) => json(m))).toEqual(['for mallory']);
    expect(alice.of('message').map((m) => json(m))).toEqual(['for alice']);
  });

  it('canJoin refuses joining a room and listing its members; the members hear of nobody', async () => {
    const served = await bed.serve({ canJoin });
    const admin = await bed.connect('json', { headers: { 'X-Client-ID': 'admin' } });
    admin.join('staff');
    await admin.until((x) => x.presenceEvents().length === 1);
    const mallory = await bed.connect('msgpack', { headers: { 'X-Client-ID': 'mallory' } });
    mallory.join('staff');
    mallory.send({ type: 'presence', data: mallory.codec.encodeRoomRequest({ roomId: 'staff' }) });
    mallory.join('lobby');
    await mallory.until((x) => x.of('error').length === 2 && x.presenceEvents().length === 1);
    expect(mallory.of('error').map((m) => json(m) as ErrorBody)).toEqual([
      expect.objectContaining({ code: 'HYP_E_WS_FORBIDDEN_CHANNEL', room_id: 'staff' }),
      expect.objectContaining({ code: 'HYP_E_WS_FORBIDDEN_CHANNEL', room_id: 'staff' }),
    ]);
    expect(served.hub.members('staff')).toEqual(['admin']);
    served.hub.toRoom('staff', 'staff only');
    served.hub.toRoom('lobby', 'everyone');
    await mallory.until((x) => x.of('message').length === 1);
    expect(mallory.of('message').map((m) => json(m))).toEqual(['everyone']);
    expect(admin.presenceEvents()).toEqual(['join:admin']);
  });
});
