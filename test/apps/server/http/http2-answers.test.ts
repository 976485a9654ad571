/**
 * What HTTP/2 clients receive from the context helpers: `c.text()` and
 * friends answer straight on the stream when nothing else was set (status,
 * content headers, date, `x-request-id` sent never-indexed, HEAD without a
 * body), and through the compat response when a handler or hyp set headers
 * first (405 `Allow`, `c.header`). A stream the client cancelled before the
 * answer is counted, not crashed on. Both ways the worker can be handed
 * HTTP/2 requests: bare streams (compat objects built on demand) and Node's
 * compat API.
 */
import { type ClientHttp2Session, constants, type IncomingHttpHeaders, sensitiveHeaders } from 'node:http2';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { closeSession, configWith, connect2 } from './harness.js';

describe.each([
  ['bare streams (App.handleStream)', true],
  ['the compat API (App.handle)', false],
])('HTTP/2 answers from the context helpers, served as %s', (_how, bare) => {
  let http: HttpServer;
  let app: App;
  let session: ClientHttp2Session;
  let late: { release: () => void; answered: Promise<void> } | undefined;
  let held: (() => void) | undefined;

  beforeAll(async () => {
    const config = configWith(['server.protocol=http2']);
    app = new App({ config, registry: new Registry() });
    app.get('/text', (c) => c.text('hi'));
    app.get('/created', (c) => c.json({ made: true }, 201));
    app.get('/status', (c) => c.status(202).html('<p>ok</p>'));
    app.get('/decorated', (c) => c.header('x-extra', 'yes').text('decorated'));
    app.get('/no-content/:status', (c) => c.text('dropped', Number(c.param('status'))));
    app.get('/empty/:status', (c) => c.empty(Number(c.param('status'))));
    app.get('/informational', (c) => c.text('never', 103));
    app.get('/hold', async (c) => {
      held?.();
      await c.closed();
      c.text('after the reset');
    });
    app.post('/echo', async (c) => c.text(`${c.header('x-tag') ?? ''}:${String(await c.body('text'))}`));
    app.get('/who', (c) => c.text(`${c.header('x-tag')}/${c.cookie('sid')}/${c.path}/${c.query('q')}`));
    app.get('/cut/sync', (c) => {
      c.res.write('partial-');
      throw new Error('failed after the head went out');
    });
    app.get('/cut/async', async (c) => {
      c.res.write('partial-');
      await new Promise((r) => setImmediate(r));
      throw new Error('failed after the head went out');
    });
    app.get('/cut/stream', (c) =>
      c.stream(
        (async function* () {
          yield 'partial-';
          await new Promise((r) => setImmediate(r));
          throw new Error('source failed');
        })(),
        'text/plain',
      ),
    );
    app.get('/late', async (c) => {
      let release = () => {};
      const released = new Promise<void>((r) => {
        release = r;
      });
      let answered = () => {};
      late = { release, answered: new Promise<void>((r) => (answered = r)) };
      await released;
      c.text('too late');
      answered();
    });
    http = new HttpServer({
      config,
      handler: app.handle,
      streamHandler: bare ? app.handleStream : undefined,
      registry: new Registry(),
    });
    const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
    session = await connect2(`http://127.0.0.1:${port}`);
  });
  afterAll(async () => {
    await closeSession(session);
    await http.drain(Date.now() + 2000);
  });

  interface H2Answer {
    headers: IncomingHttpHeaders;
    body: string;
    trailers: boolean;
  }

  function request(path: string, headers: Record<string, string> = {}): Promise<H2Answer> {
    return new Promise((resolve, reject) => {
      // CONNECT carries no :path (RFC 9113 §8.5).
      const stream = session.request(
        headers[':method'] === 'CONNECT' ? headers : { ':path': path, ...headers },
      );
      let got: IncomingHttpHeaders = {};
      let body = '';
      let trailers = false;
      stream.setEncoding('utf8');
      stream.on('response', (h) => {
        got = h;
      });
      stream.on('trailers', () => {
        trailers = true;
      });
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('end', () => resolve({ headers: got, body, trailers }));
      stream.on('error', reject);
      stream.end();
    });
  }

  function send(
    path: string,
    payload: string,
    headers: Record<string, string>,
    onContinue?: () => void,
  ): Promise<H2Answer> {
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':path': path, ':method': 'POST', ...headers });
      let got: IncomingHttpHeaders = {};
      let body = '';
      stream.setEncoding('utf8');
      stream.on('continue', () => {
        onContinue?.();
        stream.end(payload);
      });
      stream.on('response', (h) => {
        got = h;
      });
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('end', () => resolve({ headers: got, body, trailers: false }));
      stream.on('error', reject);
      if (!onContinue) stream.end(payload);
    });
  }

  async function requestsTotal(route: string, status: string): Promise<number> {
    const metric = await app.registry.getSingleMetric('hyp_http_requests_total')!.get();
    return metric.values.find((v) => v.labels.route === route && v.labels.status === status)?.value ?? 0;
  }

  it('c.text: status, content headers, date and a request id the client may not index', async () => {
    const a = await request('/text');
    expect(a.headers[':status']).toBe(200);
    expect(a.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(a.headers['content-length']).toBe('2');
    expect(a.headers.date).toMatch(/GMT$/);
    expect(a.headers['x-request-id']).toMatch(/^[\w-]+$/);
    expect(a.headers[sensitiveHeaders]).toEqual(['x-request-id']);
    expect(a.body).toBe('hi');
    expect(a.trailers).toBe(false);
  });

  it('echoes a well-formed client request id and replaces a malformed one', async () => {
    expect((await request('/text', { 'x-request-id': 'client-id.42' })).headers['x-request-id']).toBe(
      'client-id.42',
    );
    const replaced = (await request('/text', { 'x-request-id': 'bad id with spaces' })).headers[
      'x-request-id'
    ];
    expect(replaced).not.toBe('bad id with spaces');
    expect(replaced).toMatch(/^[\w-]+$/);
  });

  it('HEAD gets the GET headers, content-length included, and no body', async () => {
    const a = await request('/text', { ':method': 'HEAD' });
    expect(a.headers[':status']).toBe(200);
    expect(a.headers['content-length']).toBe('2');
    expect(a.headers['x-request-id']).toBeTruthy();
    expect(a.body).toBe('');
  });

  it('a status given to c.json or set by c.status is sent', async () => {
    const created = await request('/created');
    expect(created.headers[':status']).toBe(201);
    expect(JSON.parse(created.body)).toEqual({ made: true });
    const accepted = await request('/status');
    expect(accepted.headers[':status']).toBe(202);
    expect(accepted.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(accepted.body).toBe('<p>ok</p>');
  });

  it('headers set before the answer (c.header, a 405 Allow) go out with the request id', async () => {
    const decorated = await request('/decorated');
    expect(decorated.headers['x-extra']).toBe('yes');
    expect(decorated.headers['x-request-id']).toBeTruthy();
    expect(decorated.headers['content-length']).toBe('9');
    expect(decorated.body).toBe('decorated');

    const refused = await request('/text', { ':method': 'POST' });
    expect(refused.headers[':status']).toBe(405);
    expect(refused.headers.allow).toBe('GET, HEAD, OPTIONS');
    expect(refused.headers['x-request-id']).toBeTruthy();
    expect(JSON.parse(refused.body).error.code).toBe('HYP_E_METHOD_NOT_ALLOWED');
  });

  it('204, 205 and 304 never carry content: a body handed to c.text is dropped, the stream ends cleanly', async () => {
    // Node's HTTP/2 ends these streams with their HEADERS; writing the body
    // after that used to raise an unhandled 'error' (a crashed worker).
    for (const status of [204, 205, 304]) {
      for (const path of [`/no-content/${status}`, `/empty/${status}`]) {
        const a = await request(path);
        expect(a.headers[':status'], path).toBe(status);
        expect(a.body, path).toBe('');
        expect(a.headers['x-request-id'], path).toBeTruthy();
        expect(a.headers['content-type'], path).toBeUndefined();
        // END_STREAM frames it; RFC 9110 §8.6: no Content-Length on a 204.
        expect(a.headers['content-length'], path).toBeUndefined();
      }
    }
    const empty200 = await request('/empty/200');
    expect(empty200.headers[':status']).toBe(200);
    expect(empty200.body).toBe('');
    expect(await requestsTotal('/no-content/:status', '204')).toBe(1);
  });

  it('a 1xx status handed to an answer helper is a handler error (500), not a hung stream', async () => {
    const a = await request('/informational');
    expect(a.headers[':status']).toBe(500);
    expect(JSON.parse(a.body).error.code).toBe('HYP_E_INTERNAL');
  });

  it('reads request headers and a body (Node builds the compat request on demand)', async () => {
    const a = await send('/echo', 'payload', { 'x-tag': 't1', 'content-type': 'text/plain' });
    expect(a.headers[':status']).toBe(200);
    expect(a.body).toBe('t1:payload');
    expect(a.headers['x-request-id']).toBeTruthy();
  });

  it('reads request headers, cookies, path and query', async () => {
    const a = await request('/who?q=1', { 'x-tag': 'T', cookie: 'a=b; sid=s42' });
    expect(a.body).toBe('T/s42//who/1');
  });

  it('Expect: 100-continue gets 100 and then the answer; another expectation gets 417; CONNECT gets 405', async () => {
    let continued = false;
    const a = await send(
      '/echo',
      'after continue',
      { expect: '100-continue', 'content-type': 'text/plain' },
      () => {
        continued = true;
      },
    );
    expect(continued).toBe(true);
    expect(a.body).toBe(':after continue');
    expect((await request('/text', { expect: 'something-else' })).headers[':status']).toBe(417);
    expect(
      (await request('', { ':method': 'CONNECT', ':authority': 'example.test:443' })).headers[':status'],
    ).toBe(405);
  });

  it('a client resetting a pending stream with an error code neither crashes the server nor stops the session', async () => {
    // Without an 'error' listener on the bare stream, each of these was an
    // uncaught exception: one client could kill the worker.
    // Counted once each, as 499 (the client left before any answer).
    const before = await requestsTotal('/hold', '499');
    const codes = [
      constants.NGHTTP2_PROTOCOL_ERROR,
      constants.NGHTTP2_INTERNAL_ERROR,
      constants.NGHTTP2_REFUSED_STREAM,
      constants.NGHTTP2_ENHANCE_YOUR_CALM,
    ];
    for (const code of codes) {
      const entered = new Promise<void>((r) => {
        held = r;
      });
      const stream = session.request({ ':path': '/hold' });
      stream.on('error', () => {});
      stream.end();
      await entered;
      const closed = new Promise((r) => stream.once('close', r));
      stream.close(code);
      await closed;
      expect(stream.rstCode).toBe(code);
    }
    expect((await request('/text')).body).toBe('hi');
    for (let i = 0; i < 100 && (await requestsTotal('/hold', '499')) < before + codes.length; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(await requestsTotal('/hold', '499')).toBe(before + codes.length);
  });

  it('a handler failing after its answer began resets the stream with an error: the client never takes the cut body for a whole one', async () => {
    for (const path of ['/cut/sync', '/cut/async', '/cut/stream']) {
      const stream = session.request({ ':path': path });
      let body = '';
      let ended = false;
      let failed = false;
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('end', () => {
        ended = true;
      });
      stream.on('error', () => {
        failed = true;
      });
      stream.end();
      await new Promise((r) => stream.once('close', r));
      // RST_STREAM NO_ERROR after part of a body reads as a complete answer.
      expect({ path, rst: stream.rstCode, ended, failed }).toEqual({
        path,
        rst: constants.NGHTTP2_INTERNAL_ERROR,
        ended: false,
        failed: true,
      });
      expect('partial-'.startsWith(body), path).toBe(true);
    }
    expect((await request('/text')).body).toBe('hi');
  });

  it('an answer to a stream the client already cancelled is dropped; the session keeps serving', async () => {
    const before = await requestsTotal('/late', '499');
    const stream = session.request({ ':path': '/late' });
    stream.on('error', () => {});
    for (let i = 0; i < 100 && late === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    expect(late).toBeDefined();
    const closed = new Promise((r) => stream.once('close', r));
    stream.close();
    await closed;
    await new Promise((r) => setTimeout(r, 50)); // let the server see the RST_STREAM
    late!.release();
    await late!.answered;
    expect((await request('/text')).body).toBe('hi');
    // The cancelled request is accounted once, when its response closed: as 499, nothing was sent.
    expect(await requestsTotal('/late', '499')).toBe(before + 1);
  });
});
