/**
 * The workarounds that read Node internals say so when the internal is
 * missing (a future Node), once per internal, as HYP_W_NODE_INTERNALS on
 * the worker's log; on the Nodes we run (20, 26) they find every one.
 */
import { once } from 'node:events';
import { createServer as createH2Server, connect as h2connect, type ServerHttp2Session } from 'node:http2';
import { connect, createServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { flushedBytes } from '../../../apps/server/flushed.js';
import { StreamStallWatch } from '../../../apps/server/http/stream-stall.js';
import { reportedInternals, setInternalsLog } from '../../../apps/server/node-internals.js';

function captureLog(): { lines: Array<Record<string, unknown>>; log: pino.Logger } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: pino({ level: 'info' }, sink) };
}

afterEach(() => setInternalsLog(undefined));

describe('Node internals the runtime reads', () => {
  it('are found on this Node: a real socket and a real HTTP/2 session report nothing', async () => {
    const server = createServer((s) => s.on('data', () => {}));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const client = connect(port, '127.0.0.1');
    await once(client, 'connect');
    client.write('x'.repeat(1000));
    await new Promise((r) => setImmediate(r));
    expect(flushedBytes(client)).toBeGreaterThanOrEqual(0);

    const h2 = createH2Server();
    const sessions: ServerHttp2Session[] = [];
    h2.on('session', (s) => sessions.push(s));
    h2.on('stream', (stream) => stream.respond({ ':status': 200 }));
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    const h2client = h2connect(`http://127.0.0.1:${(h2.address() as { port: number }).port}`);
    const req = h2client.request({ ':path': '/' });
    await once(req, 'response');
    const fired: number[] = [];
    new StreamStallWatch(1000, (_s, pending) => fired.push(pending)).check(sessions[0]!, Date.now());

    expect(reportedInternals()).toEqual([]);
    req.close();
    h2client.close();
    client.destroy();
    h2.close();
    server.close();
  });

  it('a missing one is logged once as HYP_W_NODE_INTERNALS, naming the internal, and the workaround stands down', () => {
    const { lines, log } = captureLog();
    setInternalsLog(log);
    // A session and a socket as a Node without those internals would hand over.
    const session = { destroyed: false } as unknown as ServerHttp2Session;
    const watch = new StreamStallWatch(1000, () => {
      throw new Error('no stream to reset');
    });
    watch.check(session, Date.now());
    watch.check(session, Date.now());
    expect(flushedBytes({} as Socket)).toBe(-1);
    expect(flushedBytes({} as Socket)).toBe(-1);

    const warned = lines.filter((l) => l.code === 'HYP_W_NODE_INTERNALS');
    expect(warned.map((l) => l.internal)).toEqual(['Http2Session[kState].streams', 'net.Socket._handle']);
    expect(String(warned[0]!.msg)).toContain(process.version);
    expect(String(warned[0]!.msg)).toContain('server.limits.send_timeout for HTTP/2 streams is off');
    expect(warned.every((l) => l.level === 40)).toBe(true);
  });
});
