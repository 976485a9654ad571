/**
 * HTTP/2 sessions stay usable when clients cancel large answers: Node
 * counts an answer's queued bytes against the session's memory budget and
 * never uncounts what a reset stream left queued, so one-chunk multi-MiB
 * answers (`c.text(big)`, `c.res.end(big)`) used to get every later stream
 * on the connection refused with ENHANCE_YOUR_CALM. hyp writes them in
 * 64 KiB slices and closes a session with GOAWAY before the loss adds up.
 */
import { type ClientHttp2Session, constants } from 'node:http2';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { until } from '../../../helpers/supervisor.js';
import { closedBy, closeSession, configWith, connect2, rawConnect, serve } from './harness.js';

interface Outcome {
  status: number;
  bytes: number;
  rstCode: number;
}

/** One request; with `cancelAfter`, the client resets the stream (CANCEL) once that many body bytes arrived. */
function fetch2(session: ClientHttp2Session, path: string, cancelAfter?: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': path });
    let status = 0;
    let bytes = 0;
    let cancelled = false;
    stream.on('response', (h) => {
      status = Number(h[':status']);
    });
    stream.on('data', (d: Buffer) => {
      bytes += d.length;
      if (cancelAfter !== undefined && bytes >= cancelAfter && !cancelled) {
        cancelled = true;
        stream.close(constants.NGHTTP2_CANCEL);
      }
    });
    stream.on('error', () => {});
    stream.on('close', () => resolve({ status, bytes, rstCode: stream.rstCode ?? 0 }));
    stream.end();
  });
}

describe('HTTP/2 large answers and cancelling clients', () => {
  let http: HttpServer;
  let url: string;

  beforeAll(async () => {
    const config = configWith(['server.protocol=http2']);
    const app = new App({ config, registry: new Registry() });
    const size = (q: string | undefined) => Number(q ?? 1 << 20);
    app.get('/', (c) => c.text('ok'));
    // Straight onto the bare stream, through the compat response (a header
    // set first), and by hand through c.res: each one chunk.
    app.get('/big', (c) => c.text('x'.repeat(size(c.query('bytes')))));
    app.get('/big-header', (c) =>
      c.header('cache-control', 'no-store').json('y'.repeat(size(c.query('bytes')))),
    );
    app.get('/big-res', (c) => {
      c.res.end(Buffer.alloc(size(c.query('bytes')), 0x7a));
    });
    http = new HttpServer({
      config,
      handler: app.handle,
      streamHandler: app.handleStream,
      registry: new Registry(),
    });
    const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await http.drain(Date.now() + 2000);
  });

  it.each(['/big', '/big-header', '/big-res'])(
    'a client that cancels multi-MiB answers from %s keeps being served on the same connection',
    async (path) => {
      const session = await connect2(url);
      try {
        const after: Outcome[] = [];
        for (let round = 0; round < 6; round++) {
          const cut = await fetch2(session, `${path}?bytes=${4 << 20}`, 1);
          expect(cut.rstCode).toBe(constants.NGHTTP2_CANCEL);
          after.push(await fetch2(session, '/'));
        }
        expect(after.map((o) => [o.status, o.rstCode])).toEqual(Array(6).fill([200, 0]));
      } finally {
        await closeSession(session);
      }
    },
  );

  it('several multi-MiB answers in flight on one connection do not get a further stream refused', async () => {
    const session = await connect2(url);
    try {
      const bytes = 5 << 20;
      const all = await Promise.all([
        fetch2(session, `/big?bytes=${bytes}`),
        fetch2(session, `/big-res?bytes=${bytes}`),
        fetch2(session, `/big?bytes=${bytes}`),
        fetch2(session, '/'),
      ]);
      expect(all.map((o) => [o.status, o.rstCode])).toEqual(Array(4).fill([200, 0]));
      expect(all.slice(0, 3).map((o) => o.bytes)).toEqual([bytes, bytes, bytes]);
    } finally {
      await closeSession(session);
    }
  });

  it('a connection that lost too much to cancelled answers gets a GOAWAY; the requests after it are served on a new one', async () => {
    let goaways = 0;
    const open = async () => {
      const s = await connect2(url);
      s.once('goaway', () => goaways++);
      return s;
    };
    let session = await open();
    const refused: Outcome[] = [];
    try {
      // 64 KiB may stay charged per cancel; Node's budget is 10 MiB: 200 cancels would exhaust it.
      for (let round = 0; round < 200; round++) {
        if (session.closed || session.destroyed) {
          await closeSession(session);
          session = await open();
        }
        const cut = await fetch2(session, `/big?bytes=${1 << 20}`, 1);
        if (cut.rstCode !== constants.NGHTTP2_CANCEL) refused.push(cut);
        // The GOAWAY may cross this request: the client is then told to retry it elsewhere.
        const next = await fetch2(session, '/');
        if (next.rstCode === constants.NGHTTP2_REFUSED_STREAM || session.closed) continue;
        if (next.status !== 200 || next.rstCode !== 0) refused.push(next);
      }
    } finally {
      await closeSession(session);
    }
    expect(refused).toEqual([]);
    expect(goaways).toBeGreaterThan(0);
  });
});

// --- HTTP/2 frames, by hand ---

const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** HEADERS (END_STREAM | END_HEADERS) for `GET /` on stream 1: `:method GET`, `:scheme http`, `:path /`, `:authority x`. */
const getRoot = frame(1, 0x5, 1, Buffer.from([0x82, 0x86, 0x84, 0x01, 0x01, 0x78]));

describe('HTTP/2 sessions that nghttp2 has ended', () => {
  it.each([
    ['DATA on stream 0 (a connection error)', frame(0, 0, 0, Buffer.from('x'))],
    ['a SETTINGS frame of 5 bytes (a connection error)', frame(4, 0, 0, Buffer.alloc(5))],
    ['a GOAWAY from the peer, which then keeps its socket open', frame(7, 0, 0, Buffer.alloc(8))],
  ])('after %s, the session is closed at once, not at the idle timeout', async (_what, ending) => {
    // Long idle and first-request timeouts: only the end of the session may close it.
    const served = await serve(['server.protocol=http2', 'server.http2.idle_timeout=10m']);
    try {
      const socket = await rawConnect(served.port);
      const closed = closedBy(socket);
      // A served request first: the session is no longer waiting for its first one.
      const answered = new Promise<void>((resolve) => {
        socket.on('data', (d: Buffer) => {
          // Acknowledge the server's SETTINGS; resolve on the answer's HEADERS (type 1) on stream 1.
          for (let at = 0; at + 9 <= d.length; at += 9 + d.readUIntBE(at, 3)) {
            if (d[at + 3] === 4 && (d[at + 4]! & 1) === 0) socket.write(frame(4, 1, 0));
            if (d[at + 3] === 1 && d.readUInt32BE(at + 5) === 1) resolve();
          }
        });
      });
      socket.write(Buffer.concat([preface, frame(4, 0, 0), getRoot]));
      await answered;
      expect(served.http.connections).toBe(1);
      socket.write(ending);
      await until(() => served.http.connections === 0, 'the ended session to close', 15_000);
      await closed;
    } finally {
      await served.close();
    }
  });
});
