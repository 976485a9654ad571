/**
 * A key rotation seen from the client (docs/websocket.md, Client library,
 * "Keys"): the client holds one key set. Two hubs on one pod-wide history
 * stand for the workers before and after a rolling restart that made new
 * keys current and kept the old ones as `previousKeys` (key ids on). A
 * client still on the old set reconnects to the new worker: its publishes
 * are accepted, but it opens nothing the hub sends. The documented switch —
 * a new client on the new keys, subscribing from the old one's offset —
 * resumes where the old one stopped: every message once, in order.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { IpcHistory } from '../../../apps/server/ws/ipc-history.js';
import { eventually, podHistoryChannels } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';
import { portOf } from './front.js';

afterEach(closeAll);

const oldKeys = { aesKey: randomBytes(32), hmacKey: randomBytes(32), keyId: 1 };
const newKeys = { aesKey: randomBytes(32), hmacKey: randomBytes(32), keyId: 2 };

describe('a hub key rotation, from the client', () => {
  it('a client on the old keys is heard but opens nothing; a new client from its offset resumes exactly once', async () => {
    const { channels } = podHistoryChannels(2);
    const before = await hub({
      security: { keys: oldKeys, keyIds: true },
      sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[0] }),
    });
    const after = await hub({
      security: { keys: newKeys, previousKeys: [oldKeys], keyIds: true },
      sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[1] }),
    });
    const f = await frontOf(before);

    const reader = client(f.url, { clientId: 'reader', security: oldKeys });
    reader.subscribe('orders');
    await reader.ws.connect();
    // subscribed at the head: publishes the hub handles before the subscribe would not reach it
    await eventually(() => before.hub.subscribers('orders') === 1);
    const writer = client(after.url, { clientId: 'writer', security: newKeys });
    await writer.ws.connect();
    const old = client(before.url, { clientId: 'old-writer', security: oldKeys });
    await old.ws.connect();
    await old.ws.publishAck('orders', 'before-0');
    await old.ws.publishAck('orders', 'before-1');
    await eventually(() => reader.got('orders').length === 2);

    // the rolling restart: new connections reach the new worker, the old one closes its clients (1001)
    f.target = portOf(after.url);
    await before.hub.drain({ spreadMs: 0 });
    await eventually(() => reader.opens === 2);
    await writer.ws.publishAck('orders', 'during-0');
    await writer.ws.publishAck('orders', 'during-1');
    await eventually(() => reader.errors.length > 0);
    // what the hub sends is sealed under the new set: the old client opens none of it
    expect(reader.got('orders')).toEqual(['before-0', 'before-1']);
    expect(reader.errors[0]).toMatchObject({ code: 'HYP_E_WS_SIGNATURE', message: 'unexpected key id 2' });

    // but the hub still opens what it sends (previousKeys): its publish is delivered to the others
    const watcher = client(after.url, { clientId: 'watcher', security: newKeys });
    watcher.subscribe('orders', reader.ws.offset('orders'));
    await watcher.ws.connect();
    const late = await reader.ws.publishAck('orders', 'from-old-keys', { timeoutMs: 500 }).catch((e) => e);
    // accepted, yet its acknowledgement cannot be opened either
    expect(late).toMatchObject({ code: 'HYP_E_WS_ACK_TIMEOUT' });

    // the documented switch: a new client on the new keys from the old one's offset, then close the old one
    const next = client(after.url, { clientId: 'reader-2', security: newKeys });
    next.subscribe('orders', reader.ws.offset('orders'));
    await next.ws.connect();
    reader.ws.close();
    await writer.ws.publishAck('orders', 'after-0');
    const expected = ['during-0', 'during-1', 'from-old-keys', 'after-0'];
    await eventually(() => next.got('orders').length >= expected.length);
    expect(next.got('orders')).toEqual(expected);
    expect(watcher.got('orders')).toEqual(expected);
    expect(next.errors).toEqual([]);
  });
});
