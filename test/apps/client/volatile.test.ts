/**
 * Volatile sends (Socket.IO's `socket.volatile.emit`) against a real hub
 * (in-process, loopback): a `publish`, `broadcast` or `send` with
 * `{ volatile: true }` that cannot go out now — disconnected, or bytes
 * already waiting in the socket's send buffer — is dropped: the call returns
 * false, nothing is queued or reported, and it never arrives later.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageTooLargeError } from '../../../apps/client/index.js';
import { eventually } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';
import { portOf } from './front.js';

afterEach(async () => {
  await closeAll();
});

/** A port nothing listens on: the front's connections to it are refused, so the client stays away. */
const nowhere = 1;

describe('volatile sends', () => {
  it('while disconnected one is dropped (false, no error event) and never arrives after the reconnect; a normal one does', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const listener = client(served.url, { clientId: 'listener' });
    listener.subscribe('v');
    const direct: string[] = [];
    const broadcasts: unknown[] = [];
    served.hub.onMessage((_c, m) => {
      if (m.type === 'note') direct.push(Buffer.from(m.data).toString());
    });
    listener.ws.on('message', (m) => {
      if (m.channel === '' && m.clientId === 'sender') broadcasts.push(m.json());
    });
    await listener.ws.connect();
    const sender = client(f.url, { clientId: 'sender' });
    await sender.ws.connect();
    expect(sender.ws.publish('v', 'connected', { volatile: true })).toBe(true);
    await eventually(() => listener.got('v').length === 1);

    f.target = nowhere;
    const closes = sender.closes;
    f.cut();
    await eventually(() => sender.closes > closes);
    expect(sender.ws.connected).toBe(false);
    expect(sender.ws.publish('v', 'volatile while away', { volatile: true })).toBe(false);
    expect(sender.ws.broadcast('volatile broadcast', { volatile: true })).toBe(false);
    expect(sender.ws.send('note', 'volatile note', '', { volatile: true })).toBe(false);
    expect(sender.ws.publish('v', 'queued while away')).toBe(true);
    expect(sender.ws.broadcast('queued broadcast')).toBe(true);
    expect(sender.ws.send('note', 'queued note')).toBe(true);

    const opens = sender.opens;
    f.target = portOf(served.url);
    await eventually(() => sender.opens > opens);
    // a marker sent after the queue was flushed: once it is in, anything that was to come has
    expect(sender.ws.publish('v', 'marker', { volatile: true })).toBe(true);
    await eventually(() => listener.got('v').includes('marker'));
    await eventually(() => broadcasts.length === 1 && direct.length === 1);
    expect(listener.got('v')).toEqual(['connected', 'queued while away', 'marker']);
    expect(broadcasts).toEqual(['queued broadcast']);
    expect(direct).toEqual(['"queued note"']);
    expect(sender.errors).toEqual([]);
  });

  it('while bytes wait in the send buffer (a hub that stopped reading) one is dropped; normal ones wait behind them and arrive', async () => {
    const served = await hub();
    const listener = client(served.url, { clientId: 'listener' });
    listener.subscribe('big');
    await listener.ws.connect();
    const sender = client(served.url, { clientId: 'slow-reader' });
    await sender.ws.connect();
    await eventually(() => served.hub.subscribers('big') === 1);
    // the hub stops reading this connection: what the client sends piles up in the kernel, then in `ws`
    served.hub.client('slow-reader')!.ws.pause();
    const chunk = 'x'.repeat(64 * 1024);
    let sent = 0;
    let droppedAt = -1;
    const volatileSent: number[] = [];
    // bounded: 200 chunks of 64 KiB is 12.5 MiB, below maxQueuedBytes (16 MiB) and past loopback's buffers
    for (let i = 0; i < 200 && droppedAt < 0; i++) {
      expect(sender.ws.publish('big', { i, chunk })).toBe(true);
      sent++;
      // a turn of the event loop: the socket writes what the kernel takes, and ws's buffer shows the rest
      await new Promise((r) => setImmediate(r));
      if (sender.ws.publish('big', { volatile: i }, { volatile: true })) volatileSent.push(i);
      else droppedAt = i;
    }
    // the first ones went: nothing waited yet
    expect(droppedAt).toBeGreaterThan(0);
    served.hub.client('slow-reader')!.ws.resume();
    await eventually(
      () => listener.got('big').filter((m) => 'chunk' in (m as object)).length === sent,
      30_000,
    );
    expect(sender.ws.publish('big', { volatile: 'after' }, { volatile: true })).toBe(true);
    await eventually(() =>
      listener.got('big').some((m) => (m as { volatile?: unknown }).volatile === 'after'),
    );
    const volatiles = listener
      .got('big')
      .map((m) => (m as { volatile?: unknown }).volatile)
      .filter((v) => v !== undefined);
    expect(volatiles).toEqual([...volatileSent, 'after']);
    expect(sender.errors).toEqual([]);
  });

  it('with security, one waiting to be sealed is ahead: a burst in one synchronous loop sends its first, drops the rest, unreported', async () => {
    const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
    const served = await hub({ security: { keys } });
    const listener = client(served.url, { clientId: 'listener', security: keys });
    listener.subscribe('cursor');
    await listener.ws.connect();
    const sender = client(served.url, { clientId: 'sender', security: keys });
    await sender.ws.connect();
    await eventually(() => served.hub.subscribers('cursor') === 1);
    const results = Array.from({ length: 100 }, (_, i) => sender.ws.publish('cursor', i, { volatile: true }));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(results[0]).toBe(true);
    // a normal publish behind them: once it is in, anything that was to come has
    expect(sender.ws.publish('cursor', 'normal')).toBe(true);
    await eventually(() => listener.got('cursor').includes('normal'));
    expect(listener.got('cursor')).toEqual([0, 'normal']);
    expect(sender.errors).toEqual([]);
  });

  it('a volatile message over maxSendSize throws, connected or not, as any other', async () => {
    const served = await hub();
    const c = client(served.url, { maxSendSize: 1024 });
    const big = 'x'.repeat(2048);
    expect(() => c.ws.publish('v', big, { volatile: true })).toThrow(MessageTooLargeError);
    await c.ws.connect();
    expect(() => c.ws.publish('v', big, { volatile: true })).toThrow(MessageTooLargeError);
    expect(c.ws.publish('v', 'small', { volatile: true })).toBe(true);
  });
});
