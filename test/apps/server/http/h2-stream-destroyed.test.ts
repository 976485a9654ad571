/**
 * A stream already destroyed when the engine's 'stream' listener sees it.
 * Node emits 'stream' a tick after it parsed the HEADERS frame; a peer's
 * RST_STREAM read in between destroys the stream first. Seen under load in
 * the rapid-reset flood (h2-floods.test.ts): a `POST` with
 * `Expect: 100-continue` then reset crashed the worker with an uncaught
 * ERR_HTTP2_INVALID_STREAM from Node's `writeContinue`, and plain requests
 * reached their handler. Here the race is made certain: a real stream of a
 * real session is reset by its client, and only after its 'close' is it
 * handed to the listener, as Node would on that later tick.
 */
import { once } from 'node:events';
import {
  type ClientHttp2Session,
  connect,
  constants,
  createServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http2Sessions } from '../../../../apps/server/http/protocols.js';

let server: Http2Server | undefined;
let client: ClientHttp2Session | undefined;
afterEach(async () => {
  client?.destroy();
  server?.close();
  client = undefined;
  server = undefined;
});

interface Handed {
  stream: ServerHttp2Stream;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
}

/** A stream the client reset, once its 'close' has come on the server. */
async function resetStream(
  requestHeaders: Record<string, string>,
): Promise<{ handed: Handed; sessions: Http2Sessions }> {
  server = createServer();
  const sessions = new Http2Sessions();
  sessions.attach(server, { idleTimeoutMs: 0, requestTimeoutMs: 0 });
  const arrived = new Promise<Handed>((resolve) =>
    server!.once('stream', (stream: ServerHttp2Stream, headers, _flags, rawHeaders: string[]) => {
      stream.on('error', () => {});
      resolve({ stream, headers, rawHeaders });
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  client.on('error', () => {});
  const req = client.request(requestHeaders, { endStream: false });
  req.on('error', () => {});
  const handed = await arrived;
  req.close(constants.NGHTTP2_CANCEL);
  if (!handed.stream.closed) await once(handed.stream, 'close');
  return { handed, sessions };
}

describe("the engine's 'stream' listener and a stream the peer already reset", () => {
  for (const [name, requestHeaders] of [
    ['a GET', { ':method': 'GET', ':path': '/' }],
    [
      'a POST with Expect: 100-continue (Node compat path)',
      { ':method': 'POST', ':path': '/', expect: '100-continue' },
    ],
  ] as const) {
    it(`${name}: no handler runs, nothing throws`, async () => {
      const { handed, sessions } = await resetStream(requestHeaders);
      expect(handed.stream.destroyed).toBe(true);
      const ran: string[] = [];
      const listener = sessions.trackStream(
        () => ran.push('stream handler'),
        () => ran.push('compat handler'),
      );
      expect(() => listener(handed.stream, handed.headers, 0, handed.rawHeaders)).not.toThrow();
      // Past any immediate the listener might have queued.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      expect(ran).toEqual([]);
    });
  }

  it("destroyed with an error Node has yet to emit: the listener still takes that 'error' (else an uncaught exception)", async () => {
    server = createServer();
    const sessions = new Http2Sessions();
    sessions.attach(server, { idleTimeoutMs: 0, requestTimeoutMs: 0 });
    const ran: string[] = [];
    const listener = sessions.trackStream(
      () => ran.push('stream handler'),
      () => ran.push('compat handler'),
    );
    const errors: string[] = [];
    const handled = new Promise<void>((resolve) =>
      server!.once('stream', (stream: ServerHttp2Stream, headers, _flags, rawHeaders: string[]) => {
        // As Node does for a protocol error on the stream: destroyed now, 'error' on a later tick.
        stream.destroy(new Error('a protocol error of the peer'));
        listener(stream, headers, 0, rawHeaders);
        expect(stream.listenerCount('error')).toBeGreaterThan(0);
        stream.on('error', (err: Error) => errors.push(err.message));
        stream.once('close', () => resolve());
      }),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    client.on('error', () => {});
    client.request({ ':method': 'GET', ':path': '/' }).on('error', () => {});
    await handled;
    await new Promise((r) => setImmediate(r));
    expect(errors).toEqual(['a protocol error of the peer']);
    expect(ran).toEqual([]);
  });
});
