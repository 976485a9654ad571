/**
 * HTTP/2 denial-of-service patterns against a real worker process
 * (`dist/apps/server/worker.js`, standalone, run with `--expose-gc`), on
 * h2c and on h2 over TLS: raw frames on a socket, every flood bounded in
 * frames and in time. The worker's app counts its handler runs and reports
 * its heap after a full GC; an ordinary HTTP/1.1 client asks it for `/ping`
 * between bursts, so a flood that starved other clients would stall the
 * loop. Nothing here asserts how long anything took.
 *
 * Measured on loopback (Node 20.20 / 26.10, `dist` of this change):
 * - rapid reset (HEADERS + RST_STREAM pairs): Node hands each stream over
 *   as its HEADERS frame is parsed, before the RST_STREAM behind it in the
 *   same read; nghttp2's reset limit (1,000 at once, then 33/s) ends the
 *   session with GOAWAY INTERNAL_ERROR. The handler ran about 3,000 times on
 *   h2c and 1,500 over TLS before that; since streams wait for the end of
 *   their read (protocols.ts `dispatchQueued`), 0; heap back within 2 MB;
 * - CONTINUATION without END_HEADERS: nghttp2 ends the session after its
 *   eighth CONTINUATION frame; no handler runs;
 * - PING or SETTINGS never reading the acks: ended by nghttp2's ack limit
 *   ("Flooding was detected") after about 16,000 frames;
 * - empty DATA frames: ended by Node's maxSessionInvalidFrames (1,000);
 *   WINDOW_UPDATE 0 or past 2^31-1 on a stream: a connection error at once;
 * - DATA on a stream the client has ended, a PRIORITY frame of the wrong
 *   length (MadeYouReset, CVE-2025-8671): a connection error at the first
 *   (nghttp2 1.61 in Node 20 as well as 1.70 in Node 26). Node 20 emitted
 *   no error for these, nor for rapid reset: nothing was logged until the
 *   session sweep reported them;
 * - streams holding a request body open at max_concurrent_streams: 250 per
 *   connection reach a handler, the rest are refused; about 7 KB of heap
 *   each, held until request_timeout;
 * - header blocks over max_header_size (HPACK references to one 4,000-byte
 *   table entry, 8 CONTINUATION frames each, about 4 ms of worker CPU per
 *   block): each was refused, none reached JavaScript, and the connection
 *   was kept (Node 26: 3,000 blocks, 16 s, half a core; Node 20 ended it
 *   after about 185 on h2c, not within 500 over TLS). It is now ended with
 *   GOAWAY ENHANCE_YOUR_CALM once 100 of its streams were refused.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { h2Preface } from '../../../../apps/server/http/protocols.js';
import { collectLogLines, type LogLine, root, until } from '../../../helpers/supervisor.js';
import { makePki, type TestPki } from '../tls/certs.js';
import { H2Flag, H2Type, h2Frame, requestBlock, u32 } from './harness.js';

const Type = H2Type;
const { EndStream, EndHeaders } = H2Flag;
const InternalError = 2;
const EnhanceYourCalm = 11;
const nodeMajor = Number(process.versions.node.split('.')[0]);

// --- the worker -------------------------------------------------------------

const app = `import { defineApp } from ${JSON.stringify(pathToFileURL(join(root, 'dist', 'apps', 'server', 'index.js')).href)};
let runs = 0;
export default defineApp((app) => {
  app.get('/', (c) => { runs++; return c.text('ok'); });
  app.post('/upload', async (c) => { runs++; return c.text(String((await c.body('raw')).length)); });
  app.get('/ping', (c) => c.text('pong'));
  app.get('/stats', (c) => {
    globalThis.gc();
    return c.json({ runs, heap: process.memoryUsage().heapUsed });
  });
});
`;

interface Worker {
  port: number;
  tls: boolean;
  logs: LogLine[];
  /** One `/ping` over HTTP/1.1 (keep-alive): the ordinary client. */
  ping(): Promise<string>;
  /** Handler runs so far, and the heap after a full GC. */
  stats(): Promise<{ runs: number; heap: number }>;
  stop(): void;
}

let pki: TestPki;
let appFile: string;
let running: ChildProcess[] = [];
beforeAll(() => {
  pki = makePki();
  const dir = mkdtempSync(join(tmpdir(), 'hyp-h2-floods-'));
  appFile = join(dir, 'app.mjs');
  writeFileSync(appFile, app);
});
afterEach(() => {
  for (const proc of running) proc.kill('SIGKILL');
  running = [];
});
afterAll(() => {
  for (const proc of running) proc.kill('SIGKILL');
});

async function startWorker(tls = false): Promise<Worker> {
  const env: Record<string, string> = {
    HYP_SERVER_ADDR: '127.0.0.1:0',
    HYP_LOG_FORMAT: 'json',
    HYP_LOG_LEVEL: 'debug',
  };
  if (tls) {
    env.HYP_SERVER_TLS_ENABLED = 'true';
    env.HYP_SERVER_TLS_CERT_FILE = pki.serverCert;
    env.HYP_SERVER_TLS_KEY_FILE = pki.serverKey;
  }
  const proc = spawn(
    process.execPath,
    ['--expose-gc', join(root, 'dist', 'apps', 'server', 'worker.js'), appFile],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  running.push(proc);
  const logs: LogLine[] = [];
  collectLogLines(proc.stdout!, logs);
  const serving = await until(() => logs.find((l) => l.msg === 'http listener serving'), 'listener');
  await until(() => logs.find((l) => l.msg === 'worker ready'), 'worker ready');
  const port = Number(serving.port);
  const agent = tls
    ? new https.Agent({ keepAlive: true, maxSockets: 1, ca: pki.read(pki.caCert) })
    : new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const req = (tls ? https : http).get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
    });
  return {
    port,
    tls,
    logs,
    ping: () => get('/ping'),
    stats: async () => JSON.parse(await get('/stats')) as { runs: number; heap: number },
    stop: () => {
      agent.destroy();
      proc.kill('SIGKILL');
    },
  };
}

// --- a raw HTTP/2 peer ------------------------------------------------------

interface Peer {
  socket: Socket;
  closed: boolean;
  /** The error code of the worker's first GOAWAY, once one came. */
  goaway: number | undefined;
  /** RST_STREAM frames the worker sent. */
  resets: number;
  /** Streams the worker answered to the end (END_STREAM). */
  answered: number;
}

/** A raw h2c (or h2 over TLS) connection that has sent the preface and SETTINGS; `read: false` never reads. */
async function peer(worker: Worker, read = true): Promise<Peer> {
  const socket: Socket = worker.tls
    ? tlsConnect({ host: '127.0.0.1', port: worker.port, ALPNProtocols: ['h2'], ca: pki.read(pki.caCert) })
    : new Socket().connect(worker.port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    socket.once(worker.tls ? 'secureConnect' : 'connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  const p: Peer = { socket, closed: false, goaway: undefined, resets: 0, answered: 0 };
  socket.once('close', () => {
    p.closed = true;
  });
  if (read) {
    let got = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      while (got.length >= 9) {
        const length = got.readUIntBE(0, 3);
        if (got.length < 9 + length) break;
        const type = got[3];
        if (type === Type.GoAway) p.goaway ??= got.readUInt32BE(13);
        else if (type === Type.RstStream) p.resets++;
        else if ((type === Type.Data || type === Type.Headers) && (got[4]! & EndStream) !== 0) p.answered++;
        got = got.subarray(9 + length);
      }
    });
  } else socket.pause();
  socket.write(Buffer.concat([h2Preface, h2Frame(Type.Settings, 0, 0)]));
  return p;
}

/**
 * A request whose header block is far over `max_header_size` (16 KiB) and
 * valid HPACK: one 4,000-byte header added to the table, then 128,000
 * one-byte references to it, in a HEADERS frame and 8 CONTINUATION frames.
 */
function oversizedRequest(id: number): Buffer {
  const name = Buffer.from('x-big');
  // literal with incremental indexing, new name; value length 4000 = 127 + 3873 (HPACK integer: 0x7f, 161, 30)
  const entry = Buffer.concat([
    Buffer.from([0x40, name.length]),
    name,
    Buffer.from([0x7f, 161, 30]),
    Buffer.alloc(4000, 0x61),
  ]);
  const references = Buffer.alloc(16_000, 0xbe); // the newest table entry (index 62)
  const frames = [h2Frame(Type.Headers, EndStream, id, Buffer.concat([requestBlock('/'), entry]))];
  for (let k = 0; k < 7; k++) frames.push(h2Frame(Type.Continuation, 0, id, references));
  frames.push(h2Frame(Type.Continuation, EndHeaders, id, references));
  return Buffer.concat(frames);
}

/**
 * Write `bursts` bursts of `perBurst` units (unit `i` for the i-th), until
 * the worker closes the connection or sends GOAWAY; after each burst the
 * ordinary client must get its answer. Returns the units written.
 */
async function flood(
  worker: Worker,
  p: Peer,
  unit: (i: number) => Buffer,
  bursts: number,
  perBurst: number,
): Promise<number> {
  let i = 0;
  for (let burst = 0; burst < bursts && !p.closed && p.goaway === undefined; burst++) {
    const frames: Buffer[] = [];
    for (let k = 0; k < perBurst; k++, i++) frames.push(unit(i));
    p.socket.write(Buffer.concat(frames));
    expect(await worker.ping()).toBe('pong');
  }
  return i;
}

const closedIn = (p: Peer, what: string) => until(() => p.closed || undefined, what, 15_000);

/**
 * The debug line of a session that ended for what its peer sent. Node 20
 * emitted nothing when nghttp2 itself ended a session (rapid reset, a frame
 * on a closed stream): the session sweep now reports those too.
 */
const sessionEndLogged = (worker: Worker) =>
  until(
    () => worker.logs.find((l) => /^HTTP\/2 session ended: /.test(String(l.msg))),
    'the session end logged',
  ).then((line) => expect(line).toMatchObject({ level: 'debug', code: 'HYP_E_BAD_REQUEST' }));

// --- the cases --------------------------------------------------------------

describe.each([
  ['h2c', false],
  ['h2 over TLS', true],
])('%s: a real worker under HTTP/2 floods', (_name, tls) => {
  let worker: Worker;
  afterEach(() => worker?.stop());

  it('header blocks over max_header_size, again and again: GOAWAY ENHANCE_YOUR_CALM and the connection closed once 100 were refused; no handler ran, the heap is back', async () => {
    worker = await startWorker(tls);
    const before = await worker.stats();
    const p = await peer(worker);
    // 100 bursts of 5 blocks at most (640 KB each burst); the worker used to refuse them all and keep the connection.
    await flood(worker, p, (i) => oversizedRequest(2 * i + 1), 100, 5);
    await closedIn(p, 'the connection closed');
    // The cut counts refusals from the stream ids the peer used, on the sweep;
    // RST_STREAM frames still queued when it destroys the session never go
    // out (a loaded Node 20 run read 94 of them).
    expect(p.resets).toBeGreaterThanOrEqual(80);
    const after = await worker.stats();
    expect(after.runs - before.runs).toBe(0);
    expect(after.heap - before.heap).toBeLessThan(16 << 20);
    // Node 20 (not 22+) ends an h2c session itself after about 185 refused
    // blocks ("The user callback function failed": GOAWAY INTERNAL_ERROR),
    // sometimes before the session sweep gets to it. Over TLS it did not
    // within 500, and Node 26 never did: both failed here before this change.
    // On a loaded machine, Node 20 over TLS once closed it with no GOAWAY read
    // (whose end that was is not established; Node 26 has not done it).
    if (nodeMajor < 22 && p.goaway !== EnhanceYourCalm) return;
    expect(p.goaway).toBe(EnhanceYourCalm);
    const line = worker.logs.find((l) => /HTTP\/2 session ended: 100 streams refused/.test(String(l.msg)));
    expect(line).toMatchObject({ level: 'debug', code: 'HYP_E_BAD_REQUEST' });
    expect(await worker.ping()).toBe('pong');
  });

  it('rapid reset, 20,000 HEADERS + RST_STREAM pairs: nghttp2 ends the session, logged; no handler runs for a stream reset in the read that opened it, the heap is back', async () => {
    worker = await startWorker(tls);
    const before = await worker.stats();
    const p = await peer(worker);
    const unit = (i: number) =>
      Buffer.concat([
        h2Frame(Type.Headers, EndHeaders | EndStream, 2 * i + 1, requestBlock('/')),
        h2Frame(Type.RstStream, 0, 2 * i + 1, u32(8)),
      ]);
    await flood(worker, p, unit, 40, 500);
    // GOAWAY INTERNAL_ERROR; on Node 20 the session sweep then destroys the session nghttp2 has ended.
    await closedIn(p, 'the connection closed');
    await sessionEndLogged(worker);
    const after = await worker.stats();
    // Handlers run once the read is done, when the RST_STREAM behind each HEADERS
    // has destroyed its stream: none ran (3,000 on h2c and 1,500 over TLS
    // before). Only a pair split across two reads could run one.
    expect(after.runs - before.runs).toBeLessThan(100);
    expect(after.heap - before.heap).toBeLessThan(16 << 20);
    expect(await worker.ping()).toBe('pong');
  });

  it("rapid reset through Node's compat path (POST with Expect: 100-continue): no handler runs either", async () => {
    worker = await startWorker(tls);
    const before = await worker.stats();
    const p = await peer(worker);
    // HPACK literal without indexing, new name: expect: 100-continue.
    const expectContinue = Buffer.concat([
      Buffer.from([0x00, 6]),
      Buffer.from('expect'),
      Buffer.from([12]),
      Buffer.from('100-continue'),
    ]);
    const unit = (i: number) =>
      Buffer.concat([
        h2Frame(
          Type.Headers,
          EndHeaders,
          2 * i + 1,
          Buffer.concat([requestBlock('/upload', 0x83), expectContinue]),
        ),
        h2Frame(Type.RstStream, 0, 2 * i + 1, u32(8)),
      ]);
    await flood(worker, p, unit, 40, 500);
    await closedIn(p, 'the connection closed');
    const after = await worker.stats();
    expect(after.runs - before.runs).toBeLessThan(100);
    expect(await worker.ping()).toBe('pong');
  });
});

// Guards: these pass before this change too, except on Node 20 the log line of
// the rapid-reset and closed-stream cases (nghttp2 ended those sessions silently).
describe('h2c: floods Node and nghttp2 end on their own', () => {
  let worker: Worker;
  afterEach(() => worker?.stop());

  const floods: Record<string, { first?: Buffer; unit: (i: number) => Buffer; read?: boolean }> = {
    'CONTINUATION frames without END_HEADERS, 16,000 bytes each of one endless header value': {
      // x-a: a literal value announced as 1,000,000 bytes (HPACK integer 0x7f 193 131 61)
      first: h2Frame(
        Type.Headers,
        EndStream,
        1,
        Buffer.concat([
          requestBlock('/'),
          Buffer.from([0x40, 3]),
          Buffer.from('x-a'),
          Buffer.from([0x7f, 193, 131, 61]),
        ]),
      ),
      unit: () => h2Frame(Type.Continuation, 0, 1, Buffer.alloc(16_000, 0x61)),
    },
    'empty CONTINUATION frames': {
      first: h2Frame(Type.Headers, EndStream, 1, requestBlock('/')),
      unit: () => h2Frame(Type.Continuation, 0, 1),
    },
    'PING, never reading the acks (default send_timeout)': {
      read: false,
      unit: () => h2Frame(Type.Ping, 0, 0, Buffer.alloc(8)),
    },
    'SETTINGS, never reading the acks (default send_timeout)': {
      read: false,
      unit: () => h2Frame(Type.Settings, 0, 0),
    },
    'empty DATA frames on an upload being served': {
      first: h2Frame(Type.Headers, EndHeaders, 1, requestBlock('/upload', 0x83)),
      unit: () => h2Frame(Type.Data, 0, 1),
    },
    'WINDOW_UPDATE 0 on streams being served': {
      unit: (i) =>
        Buffer.concat([
          h2Frame(Type.Headers, EndHeaders, 2 * i + 1, requestBlock('/upload', 0x83)),
          h2Frame(Type.WindowUpdate, 0, 2 * i + 1, u32(0)),
        ]),
    },
    // MadeYouReset (CVE-2025-8671) tries to make the server reset streams; nghttp2 ends the session at the first.
    'DATA on streams the client has already ended': {
      unit: (i) =>
        Buffer.concat([
          h2Frame(Type.Headers, EndHeaders | EndStream, 2 * i + 1, requestBlock('/')),
          h2Frame(Type.Data, 0, 2 * i + 1, Buffer.from('x')),
        ]),
    },
    'PRIORITY frames of the wrong length': {
      unit: (i) =>
        Buffer.concat([
          h2Frame(Type.Headers, EndHeaders | EndStream, 2 * i + 1, requestBlock('/')),
          h2Frame(Type.Priority, 0, 2 * i + 1, Buffer.alloc(4)),
        ]),
    },
    'WINDOW_UPDATE past 2^31-1 on streams being served': {
      unit: (i) =>
        Buffer.concat([
          h2Frame(Type.Headers, EndHeaders, 2 * i + 1, requestBlock('/upload', 0x83)),
          h2Frame(Type.WindowUpdate, 0, 2 * i + 1, u32(0x7fffffff)),
        ]),
    },
  };
  for (const [name, f] of Object.entries(floods)) {
    it(`${name}: the connection is closed, logged, at most one handler ran, the heap is back`, async () => {
      worker = await startWorker();
      const before = await worker.stats();
      const p = await peer(worker, f.read ?? true);
      if (f.first) p.socket.write(f.first);
      await flood(worker, p, f.unit, 100, 500);
      await closedIn(p, 'the connection closed');
      await sessionEndLogged(worker);
      const after = await worker.stats();
      expect(after.runs - before.runs).toBeLessThanOrEqual(1);
      expect(after.heap - before.heap).toBeLessThan(16 << 20);
    });
  }

  it('requests holding a body open at max_concurrent_streams on 4 connections: 250 handlers each, the rest refused, others still served, a bounded heap', async () => {
    worker = await startWorker();
    const before = await worker.stats();
    const peers: Peer[] = [];
    for (let c = 0; c < 4; c++) {
      const p = await peer(worker);
      peers.push(p);
      const frames: Buffer[] = [];
      for (let k = 0, id = 1; k < 260; k++, id += 2)
        frames.push(
          h2Frame(Type.Headers, EndHeaders, id, requestBlock('/upload', 0x83)),
          h2Frame(Type.Data, 0, id, Buffer.alloc(100, 0x61)),
        );
      p.socket.write(Buffer.concat(frames));
    }
    await until(
      async () => ((await worker.stats()).runs - before.runs === 1000 ? true : undefined),
      '1000 handlers',
    );
    await until(() => peers.every((p) => p.resets === 10) || undefined, '10 streams refused per connection');
    expect(await worker.ping()).toBe('pong');
    const held = await worker.stats();
    // Measured: about 7 KB of heap per held stream.
    expect(held.heap - before.heap).toBeLessThan(32 << 20);
    expect(peers.every((p) => !p.closed && p.goaway === undefined)).toBe(true);
    for (const p of peers) p.socket.destroy();
  });

  // The refusal count must count refused streams, not requests (a guard), and
  // refusals within 10 s, not over the session's life: 60 + 60 across that
  // window once cut the session of a client long after its first refusals.
  it('a session with 300 requests served and 60 refused for their headers, then 60 more over 10 s later, keeps serving (refusals are counted, not requests, and within 10 s)', async () => {
    worker = await startWorker();
    const p = await peer(worker);
    let id = 1;
    for (let round = 0; round < 3; round++) {
      const frames: Buffer[] = [];
      for (let k = 0; k < 100; k++, id += 2)
        frames.push(h2Frame(Type.Headers, EndHeaders | EndStream, id, requestBlock('/')));
      p.socket.write(Buffer.concat(frames));
      const want = 100 * (round + 1);
      await until(() => p.answered >= want || undefined, `${want} answers`);
    }
    let answered = 300;
    // The second 60 come once the worker has started a new 10 s window (a sweep a second).
    for (const pause of [0, 11_000]) {
      await new Promise((r) => setTimeout(r, pause));
      const resets = p.resets;
      for (let k = 0; k < 60; k++, id += 2) p.socket.write(oversizedRequest(id));
      await until(() => p.closed || p.resets >= resets + 60 || undefined, '60 streams refused');
      if (p.closed) {
        // Node 20 (not 22+) ends an h2c session itself after refused blocks
        // ("The user callback function failed": GOAWAY INTERNAL_ERROR), on a
        // loaded machine sooner than the ~185 it takes otherwise: hyp's window
        // is not what ended it, and is not observable here then.
        if (nodeMajor < 22 && p.goaway === InternalError) return;
        const sessionLines = worker.logs.filter((l) => /session/.test(String(l.msg)));
        throw new Error(
          `closed after ${p.resets - resets} refusals, GOAWAY ${p.goaway}; ${JSON.stringify(sessionLines)}`,
        );
      }
      // Past a session sweep, then one more request.
      await new Promise((r) => setTimeout(r, 1500));
      p.socket.write(h2Frame(Type.Headers, EndHeaders | EndStream, id, requestBlock('/')));
      id += 2;
      answered++;
      await until(() => p.answered >= answered || undefined, 'the answer after the refusals');
      expect(p.closed).toBe(false);
      expect(p.goaway).toBeUndefined();
    }
    p.socket.destroy();
  }, 60_000);
});
