import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

/**
 * Prepared frames: a server frame is unmasked, so one delivery's bytes on the
 * wire (header + payload) are the same for every recipient of a codec.
 * The hub frames a fan-out once and writes the same Buffer to each socket,
 * instead of letting `ws` build a header per recipient, and corks each socket
 * until the end of the event-loop turn so a burst leaves in one writev.
 *
 * Writing beside `ws` is only correct while `ws` itself writes synchronously:
 * no permessage-deflate on the connection and nothing queued in its sender.
 * `directSocket` checks exactly that and returns undefined otherwise (the
 * hub then calls `ws.send`).
 */

export function prepareFrame(payload: Uint8Array, binary: boolean): Buffer {
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x80 | (binary ? 0x02 : 0x01);
  if (header === 2) {
    frame[1] = length;
  } else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  frame.set(payload, header);
  return frame;
}

/** The payload inside a prepared frame. */
export function framePayload(frame: Buffer): Buffer {
  const header = frame[1]! === 126 ? 4 : frame[1]! === 127 ? 10 : 2;
  return frame.subarray(header);
}

interface WsInternals {
  _socket: Socket | null;
  _extensions: Record<string, unknown>;
  _sender: { _state: number; _queue: unknown[] } | null;
}

export function directSocket(ws: WebSocket): Socket | undefined {
  const internals = ws as unknown as WsInternals;
  const sender = internals._sender;
  const socket = internals._socket;
  if (!socket || !sender || sender._state !== 0 || sender._queue.length !== 0) return undefined;
  if (internals._extensions['permessage-deflate'] !== undefined) return undefined;
  return socket;
}

/** Bytes a corked socket may hold before it is flushed early. */
const corkLimit = 64 * 1024;

/**
 * Corks sockets on their first write in a turn and uncorks them all in
 * `setImmediate`, or earlier once one holds `corkLimit` bytes.
 */
export class CorkBatch {
  private corked: Socket[] = [];
  private scheduled = false;
  private readonly flush = (): void => {
    this.scheduled = false;
    const corked = this.corked;
    this.corked = [];
    for (const socket of corked) if (socket.writableCorked > 0) socket.uncork();
  };

  write(socket: Socket, frame: Buffer): void {
    if (socket.writableCorked === 0) {
      socket.cork();
      this.corked.push(socket);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    }
    socket.write(frame);
    if (socket.writableLength >= corkLimit && socket.writableCorked > 0) socket.uncork();
  }
}
