/**
 * What a held client sent before its hold (the frames `ws` had already read
 * when the hub paused it) is the client's: when the hub shuts down while the
 * hold is still in force (the end of a worker's drain under the supervisor's
 * relay hold), those frames are handed on, not dropped with the worker.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { IpcBus, type IpcChannel } from '../../../../apps/server/ws/bus.js';
import { decodeBusEvent } from '../../../../apps/server/ws/bus-event.js';
import { eventually, HubTestBed } from './helpers.js';

const bed = new HubTestBed();

/** The worker's end of an IPC channel: records what the hub relays; the test speaks for the supervisor. */
function channelToSupervisor() {
  const fromSupervisor = new EventEmitter();
  const relayed: number[] = [];
  const channel: IpcChannel = {
    send(message, written) {
      const m = message as { type?: string; message?: { payload: Uint8Array } };
      if (m.type === 'bus' && m.message) {
        const event = decodeBusEvent(m.message.payload);
        if (event?.kind === 'publish')
          relayed.push(JSON.parse(Buffer.from(event.message.data).toString()) as number);
      }
      setImmediate(() => written?.(null));
      return true;
    },
    connected: true,
    on: (event, listener) => fromSupervisor.on(event, listener),
    off: (event, listener) => fromSupervisor.off(event, listener),
  };
  return { channel, relayed, say: (m: unknown) => fromSupervisor.emit('message', m) };
}

/** Reads `read()` until it stops changing over a few turns. */
async function steady(read: () => number): Promise<number> {
  let last = -1;
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const now = read();
    if (now === last) return now;
    last = now;
  }
  return last;
}

describe('frames waiting behind a hold at shutdown', () => {
  it('a hub closed under the relay hold hands on every publish its held client had sent, in order', async () => {
    const ipc = channelToSupervisor();
    const served = await bed.serve({ bus: new IpcBus(ipc.channel, 1) });
    const c = await bed.connect();
    c.send({ type: 'publish', channel: 'news', data: Buffer.from('0') });
    await eventually(() => ipc.relayed.length === 1);
    // another worker is backed up: the supervisor holds this worker's publishers
    ipc.say({ type: 'bus-hold' });
    const total = 300;
    for (let n = 1; n < total; n++)
      c.send({ type: 'publish', channel: 'news', data: Buffer.from(String(n)) });
    const beforeClose = await steady(() => ipc.relayed.length);
    // held after the first publish that saw the hold: the rest waits in the connection
    expect(beforeClose).toBeLessThan(total);
    await served.hub.close();
    // Before: the held frames were dropped with the hub (beforeClose of 300 relayed).
    expect(ipc.relayed.length).toBeGreaterThan(beforeClose);
    // what the socket had not yet delivered to `ws` is not the hub's to hand on; what it had, all of it, in order
    expect(ipc.relayed).toEqual(Array.from({ length: ipc.relayed.length }, (_, n) => n));
  });
});
