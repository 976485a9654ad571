/**
 * How many bytes of a socket the kernel has taken: what a timeout that
 * watches a send (the TCP idle sweeper, HTTP's `send_timeout`) compares
 * between passes to tell a slow reader from one that stopped.
 *
 * Read from the libuv stream handle: `bytesWritten` (bytes handed to libuv)
 * minus `writeQueueSize` (those libuv still holds). Both are live getters of
 * the native handle, so one call is two property reads, no allocation —
 * unlike `socket.bytesWritten`, which copies the writable buffer to sum it.
 * The value only grows while the socket is open.
 *
 * The kernel reports room in the send buffer in steps, not per byte: Linux
 * wakes a blocked writer once about a third of the send buffer is free
 * (some 1.4 MB on loopback with the default `tcp_wmem`), so the value moves
 * in such steps while a peer reads slowly, and not at all once it stops.
 *
 * Under TLS, a `TLSSocket`'s handle is the TLS layer (it counts cleartext
 * and reports an empty queue while encrypted bytes wait); the encrypted bytes go out through the socket it wraps,
 * which Node keeps as `_parent` (not public API; stable from Node 20 to 26).
 */
import type { Socket } from 'node:net';
import { internalMissing } from './node-internals.js';

interface StreamHandle {
  readonly bytesWritten?: number;
  readonly writeQueueSize?: number;
}

type WithHandle = Socket & { _handle?: StreamHandle | null; _parent?: WithHandle | null };

/** Bytes of `socket` (a `TLSSocket`: of the socket it wraps) the kernel has taken; -1 once it has no handle (closed). */
export function flushedBytes(socket: Socket): number {
  // A TLSSocket's own handle (TLSWrap) counts cleartext and reports an empty queue: use the wrapped socket's.
  const own = socket as WithHandle;
  const carrier = own._parent ?? own;
  if (!('_handle' in carrier)) {
    internalMissing(
      'net.Socket._handle',
      'counting bytes the kernel has taken as progress of a slow write',
      "a large write to a slow but steady reader may be taken for an idle connection by the TCP services' idle_timeout",
    );
    return -1;
  }
  const handle = carrier._handle;
  if (handle == null) return -1;
  return (handle.bytesWritten ?? 0) - (handle.writeQueueSize ?? 0);
}
