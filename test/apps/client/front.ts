/**
 * A TCP front on a loopback port between a client and one of several hubs
 * (a load balancer, a pod's shared socket, a man in the middle): new
 * connections go to the current target; `cut()` drops every connection
 * without a close frame (a network cut, a worker killed with SIGKILL); a
 * `tap` sees each WebSocket frame the server sends and may pass it, drop it,
 * send it twice, or cut the connection right after it.
 */
import { type AddressInfo, createServer, connect as netConnect, type Server, type Socket } from 'node:net';

/** What to do with one server frame: pass it on (`pass`), `drop` it, send it `twice`, or `cut` after it. */
export type TapVerdict = 'pass' | 'drop' | 'twice' | 'cut';

/** A server frame as it crossed the front (unmasked: the server never masks). */
export interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

export interface Front {
  url: string;
  /** Upstream port of new connections. */
  target: number;
  /** Connections the front accepted so far. */
  accepted: number;
  tap: ((frame: ServerFrame) => TapVerdict) | undefined;
  /** Drops every open connection, both sides, without a close frame. */
  cut(): void;
  close(): Promise<void>;
}

/** Splits `buf` into whole WebSocket frames (header + payload) and what is left over. */
function frames(buf: Buffer): { whole: Array<{ raw: Buffer; frame: ServerFrame }>; rest: Buffer } {
  const whole: Array<{ raw: Buffer; frame: ServerFrame }> = [];
  let at = 0;
  for (;;) {
    if (buf.length - at < 2) break;
    const opcode = buf[at]! & 0x0f;
    let len = buf[at + 1]! & 0x7f;
    let head = 2;
    if (len === 126) {
      if (buf.length - at < 4) break;
      len = buf.readUInt16BE(at + 2);
      head = 4;
    } else if (len === 127) {
      if (buf.length - at < 10) break;
      len = Number(buf.readBigUInt64BE(at + 2));
      head = 10;
    }
    if (buf.length - at < head + len) break;
    const raw = buf.subarray(at, at + head + len);
    whole.push({ raw, frame: { opcode, payload: raw.subarray(head) } });
    at += head + len;
  }
  return { whole, rest: buf.subarray(at) };
}

export async function front(target: number): Promise<Front> {
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((down) => {
    state.accepted++;
    const up = netConnect({ port: state.target, host: '127.0.0.1' });
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    down.on('data', (d: Buffer) => up.write(d));
    let head = true;
    let pending = Buffer.alloc(0);
    up.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      if (head) {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        down.write(pending.subarray(0, end + 4));
        pending = pending.subarray(end + 4);
        head = false;
      }
      const { whole, rest } = frames(pending);
      pending = Buffer.from(rest);
      for (const { raw, frame } of whole) {
        const verdict = state.tap?.(frame) ?? 'pass';
        if (verdict === 'drop') continue;
        down.write(raw);
        if (verdict === 'twice') down.write(raw);
        if (verdict === 'cut') {
          // what was written still goes out; nothing after it does
          up.destroy();
          down.end(() => down.destroy());
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const state: Front = {
    url: `ws://127.0.0.1:${port}/ws`,
    target,
    accepted: 0,
    tap: undefined,
    cut() {
      for (const [down, up] of pairs) {
        down.destroy();
        up.destroy();
      }
      pairs.clear();
    },
    async close() {
      state.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return state;
}

/** The port a `ws://127.0.0.1:<port>/ws` URL names. */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}
