/**
 * Requests without a body (http/empty-requests.ts): on a Node with
 * `optimizeEmptyRequests` hyp's own code takes them ended on arrival, and
 * everything handed Node's request — `c.req`, a mounted Express app — reads
 * it exactly as a request Node handled without the option: compared
 * pattern by pattern with a plain node:http server, over real sockets.
 */
import { once } from 'node:events';
import { createServer, IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, Socket } from 'node:net';
import { pipeline, Readable, Writable } from 'node:stream';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyRequestOptions, probeEmptyRequests } from '../../../../apps/server/http/empty-requests.js';
import { reportedInternals } from '../../../../apps/server/node-internals.js';
import { until } from '../../../helpers/supervisor.js';
import { closedBy, type ListenedApp, listenApp, rawConnect } from './harness.js';

/** Ways code reads a request stream; each settles on Node's usual stream. */
const patterns: Record<string, (req: IncomingMessage) => Promise<string>> = {
  'resume-end': (req) =>
    new Promise((resolve) => {
      req.resume();
      req.once('end', () => resolve('end'));
    }),
  'data-end': (req) =>
    new Promise((resolve) => {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      req.once('end', () => resolve(`end after ${bytes} bytes`));
    }),
  'for-await': async (req) => {
    let bytes = 0;
    for await (const chunk of req) bytes += (chunk as Buffer).length;
    return `done after ${bytes} bytes`;
  },
  pipeline: (req) =>
    new Promise((resolve) => {
      let bytes = 0;
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          done();
        },
      });
      pipeline(req, sink, (err) => resolve(err ? `error ${err.message}` : `piped ${bytes} bytes`));
    }),
  'to-web': async (req) =>
    `web ${(await new Response(Readable.toWeb(req) as ReadableStream).text()).length} bytes`,
};

/** A pattern that never settles answers this instead of hanging the spec. */
function settle(read: Promise<string>): Promise<string> {
  return Promise.race([read, new Promise<string>((r) => setTimeout(() => r('never settled'), 2000).unref())]);
}

/** Stream events on requests nobody read, by request path, after their answer. */
type Seen = Map<string, string[]>;

function watchUnread(req: IncomingMessage, seen: Seen): void {
  const events: string[] = [];
  seen.set(req.url ?? '', events);
  req.once('end', () => events.push('end'));
  req.once('close', () => events.push('close'));
}

/** Each request in `raw` answered on one connection, the last one with `Connection: close`. */
async function exchange(port: number, raw: string): Promise<string> {
  const socket = await rawConnect(port);
  const answered = closedBy(socket);
  socket.write(raw);
  return (await answered).toString('latin1');
}

const get = (path: string, last = false) =>
  `GET ${path} HTTP/1.1\r\nHost: x\r\n${last ? 'Connection: close\r\n' : ''}\r\n`;
// No Content-Length, no Transfer-Encoding: a request without a body (RFC 9112 §6.3).
const postNoBody = (path: string, last = false) =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\n${last ? 'Connection: close\r\n' : ''}\r\n`;

function bodiesOf(answer: string): string[] {
  return answer
    .split(/HTTP\/1\.1 /)
    .slice(1)
    .map((one) => one.slice(one.indexOf('\r\n\r\n') + 4));
}

let hyp: ListenedApp;
let plain: Server;
let plainPort: number;
const hypUnread: Seen = new Map();
const plainUnread: Seen = new Map();

beforeAll(async () => {
  const mounted = express();
  mounted.get('/wait-end', (req, res) => {
    req.once('end', () => res.send('express saw end'));
    req.resume();
  });
  mounted.post('/json', express.json(), (req, res) => {
    res.json({ body: (req.body as unknown) ?? null });
  });
  hyp = await listenApp((app) => {
    for (const [name, read] of Object.entries(patterns)) {
      app.all(`/p/${name}`, async (c) => c.text(await settle(read(c.req as IncomingMessage))));
    }
    app.all('/unread', (c) => {
      watchUnread(c.req as IncomingMessage, hypUnread);
      c.text('answered');
    });
    app.all('/native', (c) => c.text(`ended on arrival: ${c.request.readableEnded}`));
    app.all('/body', async (c) => c.json({ text: await c.body('text') }));
    app.mount('/express', mounted);
  });
  plain = createServer((req, res) => {
    if (req.url === '/unread') {
      watchUnread(req, plainUnread);
      res.end('answered');
      return;
    }
    const read = patterns[(req.url ?? '').slice('/p/'.length)];
    if (read === undefined) throw new Error(`no pattern for ${req.url}`);
    void settle(read(req)).then((text) => res.end(text));
  });
  plain.listen(0, '127.0.0.1');
  await once(plain, 'listening');
  plainPort = (plain.address() as AddressInfo).port;
});

afterAll(async () => {
  await hyp?.close();
  plain?.close();
});

describe('requests without a body', () => {
  it('are handed to hyp ended on arrival where Node has the option and hyp can revive them', async () => {
    const nodeHasIt = typeof Reflect.get(IncomingMessage.prototype, '_dumpAndCloseReadable') === 'function';
    expect(emptyRequestOptions()).toEqual(nodeHasIt ? { optimizeEmptyRequests: true } : {});
    const answer = await exchange(hyp.port, get('/native') + postNoBody('/native', true));
    expect(bodiesOf(answer)).toEqual([`ended on arrival: ${nodeHasIt}`, `ended on arrival: ${nodeHasIt}`]);
  });

  for (const name of Object.keys(patterns)) {
    it(`read through c.req as Node's usual stream: ${name}, GET and POST without a length`, async () => {
      const raw = get(`/p/${name}`) + postNoBody(`/p/${name}`, true);
      const expected = bodiesOf(await exchange(plainPort, raw));
      expect(expected).toHaveLength(2);
      for (const one of expected) expect(one).not.toBe('never settled');
      expect(bodiesOf(await exchange(hyp.port, raw))).toEqual(expected);
    });
  }

  it("handed out through c.req and left unread: 'end' and 'close' come after the answer, as without the option", async () => {
    await exchange(plainPort, get('/unread', true));
    await exchange(hyp.port, get('/unread', true));
    await until(
      () => plainUnread.get('/unread')?.length === 2,
      "node:http's unread request to end and close",
      5000,
    );
    await until(() => hypUnread.get('/unread')?.length === 2, "hyp's unread request to end and close", 5000);
    expect(hypUnread.get('/unread')).toEqual(plainUnread.get('/unread'));
  });

  it('reach a mounted Express app as a stream that ends, and its body parser sees no body', async () => {
    const answer = await exchange(hyp.port, get('/express/wait-end') + postNoBody('/express/json', true));
    expect(bodiesOf(answer)).toEqual(['express saw end', '{"body":null}']);
  });

  it('read as an empty body by c.body(), pipelined with reads of c.req, answered in order', async () => {
    const raw =
      postNoBody('/body') +
      get('/p/resume-end') +
      postNoBody('/p/data-end') +
      get('/native') +
      get('/body', true);
    const bodies = bodiesOf(await exchange(hyp.port, raw));
    expect(bodies.slice(0, 3)).toEqual(['{"text":""}', 'end', 'end after 0 bytes']);
    expect(bodies[3]).toMatch(/^ended on arrival: (true|false)$/);
    expect(bodies[4]).toBe('{"text":""}');
  });
});

describe('the start-up probe of the revival', () => {
  it('leaves the option off, silently, on a Node without it (Node 20)', () => {
    class WithoutOption extends IncomingMessage {}
    Object.defineProperty(WithoutOption.prototype, '_dumpAndCloseReadable', { value: undefined });
    expect(probeEmptyRequests(new WithoutOption(new Socket()))).toEqual({});
    expect(reportedInternals()).not.toContain(expect.stringMatching(/^IncomingMessage stream fields/));
  });

  it('leaves the option off and reports HYP_W_NODE_INTERNALS where the revival does not undo what the option does', () => {
    // A Node whose option ends the request somewhere the revival does not reset.
    class FieldsMoved extends IncomingMessage {
      _dumpAndCloseReadable(): void {
        this.push(null);
        this.destroy();
        Object.defineProperty(this, 'readableEnded', { value: true });
      }
    }
    expect(probeEmptyRequests(new FieldsMoved(new Socket()))).toEqual({});
    expect(reportedInternals()).toContain(
      'IncomingMessage stream fields _dumped, _consuming, _readableState.{endEmitted,destroyed,closed,closeEmitted}',
    );
  });
});
