import { connect } from 'node:net';
/**
 * A client publishing faster than the pod relays: under the supervisor,
 * every publish leaves the worker on its IPC channel, and Node queues what
 * the supervisor has not read yet in the worker, without bound. The hub
 * stops reading such a client while the channel is congested, so the client
 * is slowed down by TCP flow control instead.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { IpcBus, type IpcChannel } from '../../../../apps/server/ws/bus.js';
import { decodeBusEvent } from '../../../../apps/server/ws/bus-event.js';
import { IpcFlow } from '../../../../apps/server/ws/ipc-flow.js';
import { eventually, HubTestBed, upgradeRequest } from './helpers.js';

const bed = new HubTestBed();

/**
 * An IPC channel that writes nothing until the test flushes, and says
 * "stop sending" (false, as Node's `send` does past 128 KiB) once `stopAt`
 * messages wait.
 */
function slowChannel(stopAt: number) {
  const waiting: Array<{ message: unknown; written?: (err: Error | null) => void }> = [];
  const relayed: unknown[] = [];
  let mostWaiting = 0;
  const channel: IpcChannel = {
    send(message, written) {
      waiting.push({ message, written });
      mostWaiting = Math.max(mostWaiting, waiting.length);
      return waiting.length < stopAt;
    },
    connected: true,
    on: () => undefined,
    off: () => undefined,
  };
  return {
    channel,
    relayed,
    get waiting() {
      return waiting.length;
    },
    get mostWaiting() {
      return mostWaiting;
    },
    /** Writes what waits; the callbacks run later, as Node's do. */
    flush() {
      for (const { message, written } of waiting.splice(0)) {
        relayed.push(message);
        setImmediate(() => written?.(null));
      }
    },
  };
}

describe('a client publishing faster than the IPC channel to the supervisor drains', () => {
  it('is not read from while the channel is congested: what waits in the worker stays bounded, and every publish is relayed once, in order', async () => {
    const ipc = slowChannel(8);
    const registry = new Registry();
    await bed.serve({ bus: new IpcBus(ipc.channel, 1), registry });
    const c = await bed.connect();
    const total = 2000;
    const pad = 'x'.repeat(1000);
    for (let i = 0; i < total; i++)
      c.send({ type: 'publish', channel: 'ch', data: Buffer.from(JSON.stringify({ i, pad })) });
    // Nothing is written until the hub stops reading (what it read waits, unchanged for 100 ms).
    let seen = -1;
    for (let i = 0; i < 100 && ipc.waiting !== seen; i++) {
      seen = ipc.waiting;
      await new Promise((r) => setTimeout(r, 100));
    }
    // Before: the hub read all 2000 and each waited in the worker.
    expect(ipc.waiting).toBeLessThan(total / 4);
    // Flush, as the supervisor reading the pipe would, until everything is relayed (bounded).
    for (let round = 0; round < 10_000 && ipc.relayed.length < total; round++) {
      await new Promise((r) => setTimeout(r, 2));
      ipc.flush();
    }
    await eventually(() => ipc.relayed.length === total);
    expect(ipc.mostWaiting).toBeLessThan(total / 4);
    const order = ipc.relayed.map((m) => {
      const event = decodeBusEvent((m as { message: { payload: Uint8Array } }).message.payload);
      return (JSON.parse(Buffer.from(event!.message.data).toString()) as { i: number }).i;
    });
    expect(order).toEqual(Array.from({ length: total }, (_, i) => i));
    const pauses = (await registry.getSingleMetric('hyp_ws_backpressure_pauses_total')?.get())?.values[0]
      ?.value;
    expect(pauses).toBeGreaterThan(0);
    // Read again afterwards: the connection is open and served.
    c.subscribe('after');
    await c.until((x) => x.of('subscribed').length === 1);
    expect(c.closed).toBeUndefined();
  });
});

describe('a held client', () => {
  it('hands nothing more to the bus until the hold ends: the frames of reads ws had already taken wait, in order', async () => {
    const stopAt = 8;
    const ipc = slowChannel(stopAt);
    await bed.serve({ bus: new IpcBus(ipc.channel, 1) });
    const c = await bed.connect();
    const total = 3000;
    // Small frames: one socket read carries hundreds of them.
    for (let i = 0; i < total; i++) c.send({ type: 'publish', channel: 'ch', data: Buffer.from(String(i)) });
    let seen = -1;
    for (let i = 0; i < 100 && ipc.waiting !== seen; i++) {
      seen = ipc.waiting;
      await new Promise((r) => setTimeout(r, 100));
    }
    // The publish that made the channel congested is the last one handed over.
    // Before: ws went on emitting the rest of each read after pause(), hundreds of publishes.
    expect(ipc.waiting).toBe(stopAt);
    for (let round = 0; round < 20_000 && ipc.relayed.length < total; round++) {
      await new Promise((r) => setTimeout(r, 1));
      ipc.flush();
    }
    await eventually(() => ipc.relayed.length === total);
    // The flow lets clients go once at most 16 messages are unwritten (ipc-flow.ts), those the
    // supervisor has read but not yet acknowledged included: the bound is that, not the read size.
    expect(ipc.mostWaiting).toBeLessThanOrEqual(stopAt + 16 + 1);
    const order = ipc.relayed.map((m) => {
      const event = decodeBusEvent((m as { message: { payload: Uint8Array } }).message.payload);
      return Number(Buffer.from(event!.message.data).toString());
    });
    expect(order).toEqual(Array.from({ length: total }, (_, i) => i));
  });
});

describe('a held client at drain', () => {
  it('is read again to its close frame: what it sent while held reaches the bus once the channel drains, none of it left unread in the socket', async () => {
    const ipc = slowChannel(2);
    const registry = new Registry();
    const served = await bed.serve({ bus: new IpcBus(ipc.channel, 1), registry });
    const codes: number[] = [];
    served.hub.onDisconnect((_c, code) => codes.push(code));
    const c = await bed.connect();
    // 4 KiB each: what was sent while held is more than the socket buffers unread (16 KiB)
    const pad = ' '.repeat(4096);
    const publish = (i: number) =>
      c.send({ type: 'publish', channel: 'ch', data: Buffer.from(`${i}${pad}`) });
    publish(0);
    publish(1);
    const pauses = async () =>
      (await registry.getSingleMetric('hyp_ws_backpressure_pauses_total')?.get())?.values[0]?.value ?? 0;
    for (let i = 0; i < 200 && (await pauses()) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await pauses()).toBe(1);
    // sent while the socket is paused: they wait in the kernel, unread
    for (let i = 2; i < 22; i++) publish(i);
    await new Promise((r) => setTimeout(r, 100));
    await served.hub.drain({ spreadMs: 0, deadline: Date.now() + 30_000 });
    await c.until((x) => x.closed !== undefined);
    expect(c.closed?.code).toBe(1001);
    expect(codes).toEqual([1001]);
    // the supervisor reads the channel again
    for (let round = 0; round < 500 && ipc.relayed.length < 22; round++) {
      ipc.flush();
      await new Promise((r) => setTimeout(r, 5));
    }
    const order = ipc.relayed.map((m) => {
      const event = decodeBusEvent((m as { message: { payload: Uint8Array } }).message.payload);
      return Number(Buffer.from(event!.message.data).toString().trim());
    });
    // Before: the hub never read past the hold; its 2 s timer terminated the socket, and what the
    // socket had not buffered was lost with it.
    expect(order).toEqual(Array.from({ length: 22 }, (_, i) => i));
  });
});

/** A client text frame (masked with a zero mask, so the payload goes as it is). */
function maskedTextFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, 0x80 | n]) : Buffer.from([0x81, 0x80 | 126, n >> 8, n & 0xff]);
  return Buffer.concat([head, Buffer.alloc(4), payload]);
}

describe('a held client being closed', () => {
  it('that goes on sending past 1 MiB after the close frame is cut off: its inbox stays bounded', async () => {
    const ipc = slowChannel(2);
    const registry = new Registry();
    const served = await bed.serve({ bus: new IpcBus(ipc.channel, 1), registry });
    const codes: number[] = [];
    served.hub.onDisconnect((_c, code) => codes.push(code));
    const socket = connect({ port: Number(new URL(served.url).port), host: '127.0.0.1' });
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    let head = '';
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
    });
    socket.write(upgradeRequest());
    await eventually(() => head.includes('\r\n\r\n'));
    const frame = (i: number, pad = '') =>
      maskedTextFrame(Buffer.from(JSON.stringify({ type: 'publish', channel: 'ch', data: { i, pad } })));
    socket.write(frame(0));
    socket.write(frame(1));
    const pauses = async () =>
      (await registry.getSingleMetric('hyp_ws_backpressure_pauses_total')?.get())?.values[0]?.value ?? 0;
    for (let i = 0; i < 200 && (await pauses()) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await pauses()).toBe(1);
    const draining = served.hub.drain({ spreadMs: 0, deadline: Date.now() + 30_000 });
    // deaf to the close frame: 64 frames of 60 KiB (3.75 MiB), as fast as the socket takes them
    const pad = 'x'.repeat(60 * 1024);
    let sent = 2;
    for (let i = 2; i < 66 && !socket.destroyed; i++, sent++) {
      if (!socket.write(frame(i, pad)))
        await Promise.race([new Promise((r) => socket.once('drain', r)), closed]);
    }
    await closed;
    await draining;
    expect(codes).toEqual([1006]);
    for (let round = 0; round < 500 && ipc.waiting + ipc.relayed.length > 0; round++) {
      const before = ipc.relayed.length;
      ipc.flush();
      await new Promise((r) => setTimeout(r, 5));
      if (ipc.relayed.length === before && ipc.waiting === 0) break;
    }
    // what the hub took of it: at most the bound (1 MiB) and one read more, not the 3.75 MiB sent
    expect(sent).toBeGreaterThan(30);
    expect(ipc.relayed.length).toBeLessThan(30);
  });
});

describe('the IPC flow', () => {
  it('with large messages, drains only once at most 1 MiB is unwritten, not 16 messages of any size', () => {
    const callbacks: Array<(err: Error | null) => void> = [];
    const channel: IpcChannel = {
      send(_message, written) {
        callbacks.push(written!);
        return false; // past Node's 128 KiB at once
      },
      connected: true,
      on: () => undefined,
      off: () => undefined,
    };
    const flow = new IpcFlow(channel);
    const payload = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < 20; i++) flow.send({ type: 'bus', message: { topic: 't', payload } });
    expect(flow.congested).toBe(true);
    for (const written of callbacks.splice(0, 4)) written(null);
    // Before: 16 left (48 MiB) counted as drained.
    expect(flow.congested).toBe(true);
    for (const written of callbacks.splice(0, 16)) written(null);
    expect(flow.congested).toBe(false);
  });

  it('does not count a send the channel refuses by throwing (a value IPC cannot serialize): the flow still drains', () => {
    const callbacks: Array<(err: Error | null) => void> = [];
    const channel: IpcChannel = {
      send(message, written) {
        if (message === 'unserializable') throw new TypeError('cannot serialize');
        callbacks.push(written!);
        return callbacks.length < 2;
      },
      connected: true,
      on: () => undefined,
      off: () => undefined,
    };
    const flow = new IpcFlow(channel);
    for (let i = 0; i < 20; i++) expect(() => flow.send('unserializable')).toThrow(TypeError);
    flow.send('a');
    flow.send('b');
    expect(flow.congested).toBe(true);
    let drained = false;
    flow.whenDrained(() => {
      drained = true;
    });
    for (const written of callbacks.splice(0)) written(null);
    // Before: the 20 refused sends stayed counted as waiting, so the flow never drained.
    expect(drained).toBe(true);
    expect(flow.congested).toBe(false);
  });
});
