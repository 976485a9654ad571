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
import { h2Preface } from '../../../../apps/server/http/protocols.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { until } from '../../../helpers/supervisor.js';
import { closedBy, closeSession, configWith, connect2, h2Frame, rawConnect, serve } from './harness.js';

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
        // Each cancel used to leave ~3 MiB counted: five exhaust Node's 10 MiB.
        for (let round = 0; round < 5; round++) {
          const cut = await fetch2(session, `${path}?bytes=${3 << 20}`, 1);
          expect(cut.rstCode).toBe(constants.NGHTTP2_CANCEL);
          after.push(await fetch2(session, '/'));
        }
        expect(after.map((o) => [o.status, o.rstCode])).toEqual(Array(5).fill([200, 0]));
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
        const cut = await fetch2(session, `/big?bytes=${256 * 1024}`, 1);
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

  it('answers of 64 KiB or less, cancelled while the client grants no window, are charged too: a GOAWAY comes before any stream is refused', async () => {
    let goaways = 0;
    // A window of 0: nothing of an answer leaves the server, so all of it stays queued natively.
    const open = async () => {
      const s = await connect2(url, { settings: { initialWindowSize: 0 } });
      s.once('goaway', () => goaways++);
      return s;
    };
    let session = await open();
    const refused: Outcome[] = [];
    try {
      // 60,000 bytes per cancel: Node's 10 MiB budget is gone after about 175.
      for (let round = 0; round < 250; round++) {
        if (session.closed || session.destroyed) {
          await closeSession(session);
          session = await open();
        }
        const cut = await fetchCancelOnHead(session, `/big?bytes=${60_000}`);
        if (cut.rstCode !== constants.NGHTTP2_CANCEL && cut.rstCode !== constants.NGHTTP2_REFUSED_STREAM)
          refused.push(cut);
      }
    } finally {
      await closeSession(session);
    }
    expect(refused).toEqual([]);
    expect(goaways).toBeGreaterThan(0);
  });
});

/** One request, reset by the client (CANCEL) as soon as its response head arrives. */
function fetchCancelOnHead(session: ClientHttp2Session, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': path });
    let status = 0;
    stream.on('response', (h) => {
      status = Number(h[':status']);
      stream.close(constants.NGHTTP2_CANCEL);
    });
    stream.on('error', () => {});
    stream.on('close', () => resolve({ status, bytes: 0, rstCode: stream.rstCode ?? 0 }));
    stream.end();
  });
}

// --- HTTP/2 frames, by hand ---

const preface = h2Preface;

/** HEADERS (END_STREAM | END_HEADERS) for `GET /` on stream 1: `:method GET`, `:scheme http`, `:path /`, `:authority x`. */
const getRoot = h2Frame(1, 0x5, 1, Buffer.from([0x82, 0x86, 0x84, 0x01, 0x01, 0x78]));

describe('HTTP/2 sessions that nghttp2 has ended', () => {
  it.each([
    ['DATA on stream 0 (a connection error)', h2Frame(0, 0, 0, Buffer.from('x'))],
    ['a SETTINGS frame of 5 bytes (a connection error)', h2Frame(4, 0, 0, Buffer.alloc(5))],
    ['a GOAWAY from the peer, which then keeps its socket open', h2Frame(7, 0, 0, Buffer.alloc(8))],
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
            if (d[at + 3] === 4 && (d[at + 4]! & 1) === 0) socket.write(h2Frame(4, 1, 0));
            if (d[at + 3] === 1 && d.readUInt32BE(at + 5) === 1) resolve();
          }
        });
      });
      socket.write(Buffer.concat([preface, h2Frame(4, 0, 0), getRoot]));
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

// --- server.limits.send_timeout on streams starved of flow-control window ---

/** HEADERS (END_STREAM | END_HEADERS) for `GET path` on `stream`. */
function get(stream: number, path: string): Buffer {
  const p = Buffer.from(path, 'latin1');
  const block = Buffer.concat([
    Buffer.from([0x82, 0x86, 0x04, p.length]),
    p,
    Buffer.from([0x01, 0x01, 0x78]),
  ]);
  return h2Frame(1, 0x5, stream, block);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

interface Starved {
  /** RST_STREAM codes received, by stream. */
  resets: Map<number, number>;
  /** DATA bytes received, by stream. */
  data: Map<number, number>;
  ended: Set<number>;
  closed: boolean;
  socket: import('node:net').Socket;
}

/**
 * A raw h2c client whose streams start with no flow-control window
 * (SETTINGS_INITIAL_WINDOW_SIZE 0), acknowledging the server's SETTINGS and
 * pinging every 100 ms so the connection never looks idle.
 */
async function starvedClient(port: number): Promise<Starved> {
  const socket = await rawConnect(port);
  const out: Starved = { resets: new Map(), data: new Map(), ended: new Set(), closed: false, socket };
  let buffered = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buffered = Buffer.concat([buffered, d]);
    while (buffered.length >= 9) {
      const len = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + len) break;
      const type = buffered[3]!;
      const flags = buffered[4]!;
      const id = buffered.readUInt32BE(5) & 0x7fffffff;
      const payload = buffered.subarray(9, 9 + len);
      if (type === 4 && (flags & 1) === 0) socket.write(h2Frame(4, 1, 0));
      if (type === 3) out.resets.set(id, payload.readUInt32BE(0));
      if (type === 0) out.data.set(id, (out.data.get(id) ?? 0) + len);
      if ((type === 0 || type === 1) && (flags & 1) !== 0) out.ended.add(id);
      buffered = buffered.subarray(9 + len);
    }
  });
  socket.once('close', () => {
    out.closed = true;
    clearInterval(pings);
  });
  const pings = setInterval(() => {
    if (!socket.destroyed) socket.write(h2Frame(6, 0, 0, Buffer.alloc(8)));
  }, 100);
  // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0.
  socket.write(Buffer.concat([preface, h2Frame(4, 0, 0, Buffer.from([0, 4, 0, 0, 0, 0]))]));
  return out;
}

describe('server.limits.send_timeout on HTTP/2 streams', () => {
  it('a stream whose peer grants no flow-control window, while it pings, is reset (CANCEL), counted and logged; the session lives on', async () => {
    const served = await serve(['server.protocol=http2', 'server.limits.send_timeout=1s']);
    const client = await starvedClient(served.port);
    try {
      client.socket.write(Buffer.concat([get(1, '/'), get(3, `/big?bytes=${300_000}`)]));
      await until(() => client.resets.size === 2, 'both starved streams to be reset', 15_000);
      expect(client.resets).toEqual(
        new Map([
          [1, constants.NGHTTP2_CANCEL],
          [3, constants.NGHTTP2_CANCEL],
        ]),
      );
      const metric = await served.registry.getSingleMetricAsString('hyp_http_send_timeouts_total');
      expect(metric).toMatch(/hyp_http_send_timeouts_total 2/);
      const logged = served.logs.filter((l) => l.code === 'HYP_E_STREAM_SEND_TIMEOUT');
      expect(logged.map((l) => l.stream).sort()).toEqual([1, 3]);
      // each line names the request it cut (the answer's x-request-id)
      for (const l of logged) expect(l.request_id).toMatch(/^[\w-]+$/);
      expect(client.closed).toBe(false);
      expect(served.http.connections).toBe(1);
      expect(served.http.inflight).toBe(0);
    } finally {
      client.socket.destroy();
      await served.close();
    }
  });

  it('a steady slow reader, whose download outlasts the timeout, is not cut', async () => {
    const served = await serve(['server.protocol=http2', 'server.limits.send_timeout=2s']);
    const client = await starvedClient(served.port);
    const bytes = 1 << 20;
    // 32 KiB more window (stream and connection) every 100 ms: each 64 KiB piece goes out within ~200 ms.
    const grants = setInterval(() => {
      if (!client.socket.destroyed)
        client.socket.write(
          Buffer.concat([h2Frame(8, 0, 1, u32(32 * 1024)), h2Frame(8, 0, 0, u32(32 * 1024))]),
        );
    }, 100);
    try {
      client.socket.write(get(1, `/big?bytes=${bytes}`));
      await until(() => client.ended.has(1) || client.resets.has(1), 'the slow download to end', 60_000);
      expect(client.resets.has(1)).toBe(false);
      expect(client.data.get(1)).toBe(bytes);
      expect(served.logs.some((l) => l.code === 'HYP_E_STREAM_SEND_TIMEOUT')).toBe(false);
    } finally {
      clearInterval(grants);
      client.socket.destroy();
      await served.close();
    }
  });
});
