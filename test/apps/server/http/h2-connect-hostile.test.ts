/**
 * HTTP/2 requests no handler sees, as the worker serves them (bare streams):
 * CONNECT (hyp is no proxy) is answered 405 and an expectation other than
 * 100-continue 417, each with the JSON error body every other refusal has.
 * They were empty answers.
 */
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { closeSession, configWith, connect2 } from './harness.js';

let http: HttpServer;
let session: ClientHttp2Session;
let ran = 0;

beforeAll(async () => {
  const config = configWith(['server.protocol=http2']);
  const app = new App({ config, registry: new Registry() });
  app.all('*', (c) => {
    ran++;
    return c.text('ran');
  });
  http = new HttpServer({
    config,
    handler: app.handle,
    streamHandler: app.handleStream,
    registry: new Registry(),
  });
  const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
  session = await connect2(`http://127.0.0.1:${port}`);
});

afterAll(async () => {
  await closeSession(session);
  await http.drain(Date.now() + 2000);
});

function request(headers: Record<string, string>): Promise<{ headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    let got: IncomingHttpHeaders = {};
    let body = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => {
      got = h;
    });
    stream.on('data', (d: string) => {
      body += d;
    });
    stream.on('end', () => resolve({ headers: got, body }));
    stream.on('error', reject);
    stream.end();
  });
}

describe('HTTP/2 requests refused before any handler', () => {
  it('CONNECT: 405 HYP_E_METHOD_NOT_ALLOWED naming the authority', async () => {
    const a = await request({ ':method': 'CONNECT', ':authority': 'evil.example:443' });
    expect(a.headers[':status']).toBe(405);
    expect(a.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(JSON.parse(a.body)).toEqual({
      error: { code: 'HYP_E_METHOD_NOT_ALLOWED', message: 'method CONNECT not allowed for evil.example:443' },
    });
    expect(ran).toBe(0);
  });

  it('an expectation other than 100-continue: 417 HYP_E_EXPECTATION_FAILED naming it', async () => {
    const a = await request({ ':path': '/x', expect: '200-ok' });
    expect(a.headers[':status']).toBe(417);
    expect(JSON.parse(a.body)).toEqual({
      error: {
        code: 'HYP_E_EXPECTATION_FAILED',
        message: 'unsupported expectation "200-ok"; only 100-continue is',
      },
    });
    expect(ran).toBe(0);
  });

  it('the session keeps serving', async () => {
    const a = await request({ ':path': '/x' });
    expect(a.headers[':status']).toBe(200);
    expect(a.body).toBe('ran');
  });
});
