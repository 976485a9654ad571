import { describe, expect, it } from 'vitest';
import type { HubClient } from '../../../../apps/server/ws/hub.js';
import { HubTestBed, json, text } from './helpers.js';

/**
 * A client's `broadcast` reaches every client with the envelope's channel as
 * sent, and a client library hands a delivery naming a channel to that
 * channel's handlers (hyp/client does). `canPublish` guards publishes per
 * channel, so a broadcast naming a channel must pass it for that channel too,
 * or it would be a way around it.
 */

const bed = new HubTestBed();

/** Only `admin` may publish on `announcements`; everyone may broadcast. */
const canPublish = (c: HubClient, channel: string) => channel !== 'announcements' || c.id === 'admin';

describe('a client broadcast naming a channel', () => {
  it('is refused with HYP_E_WS_CONTROL when canPublish refuses that channel; no client receives it', async () => {
    await bed.serve({ canPublish });
    const reader = await bed.connect('json', { headers: { 'X-Client-ID': 'reader' } });
    reader.subscribe('announcements');
    await reader.until((x) => x.of('subscribed').length === 1);
    const mallory = await bed.connect('msgpack', { headers: { 'X-Client-ID': 'mallory' } });
    mallory.send({
      type: 'broadcast',
      channel: 'announcements',
      data: Buffer.from('"server down, log in at evil.example"'),
    });
    mallory.send({ type: 'broadcast', data: Buffer.from('"plain broadcast"') });
    await reader.until((x) => x.of('message').length >= 1);
    await mallory.until((x) => x.of('error').length === 1 && x.of('message').length === 1);
    // the plain broadcast came, the one naming the guarded channel did not (they were sent in that order)
    expect(reader.of('message').map((m) => `${m.channel}:${text(m)}`)).toEqual([':"plain broadcast"']);
    const err = json(mallory.of('error')[0]!) as { code: string; message: string };
    expect(err.code).toBe('HYP_E_WS_CONTROL');
    expect(err.message).toMatch(/not allowed to publish on "announcements"/);
  });

  it('goes out as before when canPublish allows the channel', async () => {
    await bed.serve({ canPublish });
    const reader = await bed.connect('json');
    const admin = await bed.connect('json', { headers: { 'X-Client-ID': 'admin' } });
    admin.send({ type: 'broadcast', channel: 'announcements', data: Buffer.from('"maintenance at 22:00"') });
    await reader.until((x) => x.of('message').length === 1);
    expect(reader.of('message')[0]!.channel).toBe('announcements');
    expect(reader.of('message')[0]!.clientId).toBe('admin');
  });
});
