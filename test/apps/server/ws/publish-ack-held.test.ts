/**
 * Acknowledged publishes of a held client (hub.ts holdWhileCongested): its
 * frames wait on the connection while the pod-wide history's IPC channel is
 * backed up. A client that leaves meanwhile and comes back with the same
 * client id sends its unacknowledged publishes again on the new connection;
 * the old connection's frames, handled once the hold ends, must not take
 * the acknowledgement away from it.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { IpcChannel } from '../../../../apps/server/ws/bus.js';
import type { Connection } from '../../../../apps/server/ws/connection.js';
import type { Hub } from '../../../../apps/server/ws/hub.js';
import { IpcHistory } from '../../../../apps/server/ws/ipc-history.js';
import { PodHistory } from '../../../../supervisor/history.js';
import type { HistoryPublish } from '../../../../supervisor/ipc.js';
import { eventually, HubTestBed } from './helpers.js';

const bed = new HubTestBed();

/**
 * The IPC channel to a stand-in supervisor keeping the pod-wide history, that
 * reads nothing until the test flushes, and says "stop sending" (false, as
 * Node's `send` does) once `stopAt` messages wait.
 */
function slowPod(stopAt: number) {
  const history = new PodHistory({ size: 1000 });
  const end = new EventEmitter();
  const waiting: Array<{ message: unknown; written?: (err: Error | null) => void }> = [];
  const channel: IpcChannel = {
    send(message, written) {
      waiting.push({ message, written });
      return waiting.length < stopAt;
    },
    connected: true,
    on: (event, listener) => end.on(event, listener),
    off: (event, listener) => end.off(event, listener),
  };
  return {
    channel,
    get waiting() {
      return waiting.length;
    },
    /** The supervisor reads what waits (the first `count`) and answers, then Node reports it written. */
    flush(count = waiting.length) {
      for (const { message, written } of waiting.splice(0, count)) {
        const m = message as { type: string } & HistoryPublish;
        if (m.type === 'history-publish') {
          const offset = history.append(`${m.topic}\u0000${m.channel}`, m.payload);
          end.emit('message', { ...m, type: 'history', offset });
        }
        setImmediate(() => written?.(null));
      }
    },
  };
}

function awaitingAcks(hub: Hub): number {
  return (hub as unknown as { awaitingAck: Map<string, unknown> }).awaitingAck.size;
}

describe('an acknowledged publish held on a connection that was replaced', () => {
  it('the old connection, handled after the hold, does not take the acknowledgement from the new one', async () => {
    const pod = slowPod(2);
    const { hub } = await bed.serve({
      sharedHistory: new IpcHistory({ topic: '/ws', channel: pod.channel }),
    });
    const first = await bed.connect('json', { headers: { 'X-Client-ID': 'alice' } });
    // one socket read: the first two publishes back the channel up, the third waits on the connection
    const socket = (first.ws as unknown as { _socket: Socket })._socket;
    socket.cork();
    first.send({ type: 'publish', channel: 'ch', data: Buffer.from('1') });
    first.send({ type: 'publish', channel: 'ch', data: Buffer.from('2') });
    first.send({ type: 'publish', channel: 'ch', data: Buffer.from('"x"'), id: 'order-1' });
    socket.uncork();
    const old = hub.client('alice') as Connection;
    await eventually(() => old.inbox?.length === 1);
    expect(pod.waiting).toBe(2);
    // alice comes back on a new connection (the old one is replaced: 4000) and sends it again
    const second = await bed.connect('json', { headers: { 'X-Client-ID': 'alice' } });
    second.send({ type: 'publish', channel: 'ch', data: Buffer.from('"x"'), id: 'order-1' });
    await eventually(() => pod.waiting === 3);
    expect(awaitingAcks(hub)).toBe(1);
    // the supervisor reads the first two: the hold ends, the old connection's frame is handled
    pod.flush(2);
    await eventually(() => pod.waiting === 2);
    for (let round = 0; round < 100 && pod.waiting > 0; round++) {
      pod.flush();
      await new Promise((r) => setTimeout(r, 5));
    }
    // before: the old connection's copy took the key; the new one's acknowledgement went to it
    await second.until((c) => c.of('published').length > 0, 5_000);
    expect(second.of('published').map((m) => m.id)).toEqual(['order-1']);
    expect(awaitingAcks(hub)).toBe(0);
  });
});
