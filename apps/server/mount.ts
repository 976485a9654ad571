/**
 * Mounting existing Node apps: an Express app, a Fastify instance
 * (`fastify.routing`), Hono's node adapter — anything that is a
 * `(req, res)` request listener — runs under a prefix. The prefix is
 * stripped from `req.url` while the mounted app runs (`req.originalUrl`
 * keeps the full URL, as Express expects) and restored when the response
 * closes, so hyp's logs, metrics and spans see the real path.
 *
 * HTTP/2 requests reach a Node handler as compat objects
 * (`Http2ServerRequest`), which Express cannot handle (it swaps their
 * prototypes for `IncomingMessage`'s and then throws outside any request
 * scope, taking the worker down). So unless the mount says the handler
 * speaks the compat API (`{ http2: true }`: Fastify, Hono), an HTTP/2
 * request is refused with RST_STREAM `HTTP_1_1_REQUIRED` (RFC 9113 §8.7),
 * on which browsers and curl retry over HTTP/1.1.
 */
import { IncomingMessage, type ServerResponse } from 'node:http';
import { constants, type Http2ServerRequest } from 'node:http2';
import { HypError } from '../../supervisor/errors.js';
import { sendContinue } from './body.js';
import type { Context } from './context.js';
import { afterSegments, originForm, prefixSegments } from './prefix.js';
import type { Handler } from './router.js';

/** A Node request listener, e.g. `express()`, `(req, res) => fastify.routing(req, res)`. */
export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

export interface MountOptions {
  /**
   * The handler accepts Node's HTTP/2 compat request/response objects
   * (Fastify, Hono's node adapter do; Express does not). Default false:
   * HTTP/2 clients are told to retry over HTTP/1.1.
   */
  http2?: boolean;
}

/** What Express reads and sets on a request: the URL before mounting, and the part a mount took. */
interface MountableRequest {
  url?: string;
  originalUrl?: string;
  baseUrl?: string;
}

/**
 * `prefix` is the normalised mount path (`''` or `/a/b`). The router matched
 * it on the decoded path, so the raw URL may spell it longer (`/%61/b`):
 * the prefix is stripped by path segments, never by its length.
 */
export function mountHandler(prefix: string, handler: NodeHandler, options: MountOptions = {}): Handler {
  const http2 = options.http2 ?? false;
  const segments = prefixSegments(prefix);
  return (c: Context) => {
    // The client left while middleware ran: nothing to answer. Over HTTP/2 the
    // compat objects built now would never emit again, and a mounted app
    // waiting on them (Fastify reading a body) would wait forever.
    if (c.signal.aborted) return undefined;
    if (!http2 && c.req.httpVersionMajor === 2) return refuseHttp2(c);
    const req = c.req as MountableRequest;
    const url = req.url ?? '/';
    if (req.originalUrl === undefined) req.originalUrl = url;
    // `OPTIONS *` (only a root mount gets it) asks about the server, not `/`: handed on as is.
    if (url !== '*') {
      const path = originForm(url);
      const rest = afterSegments(path, segments);
      // Express's invariant: baseUrl + url is the path of originalUrl, as under `outer.use(prefix, app)`.
      req.baseUrl = path.slice(0, path.length - rest.length);
      c.rewriteUrl(url, rest.charCodeAt(0) === 47 /* / */ ? rest : `/${rest}`);
    } else req.baseUrl = '';
    // A mounted app that answers twice or writes after end gets an 'error' on
    // its response, which no one else listens for: an uncaught exception.
    const res = c.res;
    res.on('error', (err: Error) => misused(c, prefix, err));
    // A body longer or shorter than the app's own Content-Length would leave
    // the next answer on a keep-alive connection misread (a response desync).
    // HTTP/2 resets such a stream (http/slices.ts).
    if (c.req.httpVersionMajor === 1) holdToContentLength(c, prefix, res as ServerResponse);
    // Resolve when the mounted app has answered, so onion middleware wraps it.
    const done = c.closed();
    const run = (request: IncomingMessage) => {
      const result = handler(request, res as ServerResponse);
      // A handler returning a promise (Hono's adapter, async wrappers) reports its failures through it.
      return result instanceof Promise ? result.then(() => done) : done;
    };
    const read = c.bodyRead;
    if (read === undefined) {
      // The mounted app reads the body itself: a client waiting for `100 Continue` gets it now.
      sendContinue(c.req);
      return run(c.req as IncomingMessage);
    }
    // hyp middleware read the body: the request stream has ended, and the
    // mounted app would wait for it forever (Fastify) or see none (Express).
    return read.then((bytes) => run(replay(c.req as IncomingMessage, bytes)));
  };
}

/**
 * A request that reads `bytes` as its body and otherwise says what `req`
 * says: the body that hyp middleware consumed, handed on to the mounted app.
 */
function replay(req: IncomingMessage, bytes: Buffer): IncomingMessage {
  const copy = new IncomingMessage(req.socket);
  copy.method = req.method;
  copy.url = req.url;
  copy.headers = req.headers;
  copy.rawHeaders = req.rawHeaders;
  // Not an Http2ServerRequest, so adapters take it for HTTP/1.1 and look for
  // the Host header (Hono's answers 400 without one): `:authority` names it.
  const authority = req.headers[':authority'];
  if (typeof authority === 'string' && req.headers.host === undefined) {
    copy.headers = { ...req.headers, host: authority };
    copy.rawHeaders = [...req.rawHeaders, 'host', authority];
  }
  copy.trailers = req.trailers;
  copy.rawTrailers = req.rawTrailers;
  copy.httpVersion = req.httpVersion;
  copy.httpVersionMajor = req.httpVersionMajor;
  copy.httpVersionMinor = req.httpVersionMinor;
  copy.complete = true;
  (copy as MountableRequest).originalUrl = (req as MountableRequest).originalUrl;
  (copy as MountableRequest).baseUrl = (req as MountableRequest).baseUrl;
  if (bytes.length > 0) copy.push(bytes);
  copy.push(null);
  return copy;
}

/**
 * Node's `strictContentLength` refuses a write past the response's own
 * Content-Length, or an end short of it, by throwing
 * ERR_HTTP_CONTENT_LENGTH_MISMATCH from `write()`/`end()`: from an app's
 * callback or timer that would be an uncaught exception, and the worker
 * would be replaced. Here the throw is caught: the misuse is logged and the
 * connection closed (the client sees the response cut), and the worker
 * serves on.
 */
function holdToContentLength(c: Context, prefix: string, res: ServerResponse): void {
  res.strictContentLength = true;
  const write = res.write;
  const end = res.end;
  let cut = false;
  const refused = (err: unknown): void => {
    if ((err as NodeJS.ErrnoException | null)?.code !== 'ERR_HTTP_CONTENT_LENGTH_MISMATCH') throw err;
    cut = true;
    const e = new HypError('HYP_E_RESPONSE_LENGTH', { detail: (err as Error).message });
    c.log.error(
      { code: e.code, err_code: 'ERR_HTTP_CONTENT_LENGTH_MISMATCH', mount: prefix || '/' },
      e.message,
    );
    res.destroy();
  };
  // Once cut, later writes and the end are dropped (Node would refuse them again).
  res.write = function (this: ServerResponse, ...args: Parameters<ServerResponse['write']>): boolean {
    if (cut) return false;
    try {
      return Reflect.apply(write, this, args);
    } catch (err) {
      refused(err);
      return false;
    }
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, ...args: Parameters<ServerResponse['end']>): ServerResponse {
    if (cut) return this;
    try {
      return Reflect.apply(end, this, args);
    } catch (err) {
      refused(err);
      return this;
    }
  } as ServerResponse['end'];
}

/** An 'error' on a mounted app's response (write after end, answering twice): logged, the worker lives on. */
function misused(c: Context, prefix: string, err: Error): void {
  const code = (err as NodeJS.ErrnoException).code;
  const e = new HypError('HYP_E_MOUNT_RESPONSE', { prefix: prefix || '/', detail: err.message });
  c.log.error({ code: e.code, err_code: code }, e.message);
}

function refuseHttp2(c: Context): Promise<void> {
  // Counted as 505 (HTTP Version Not Supported) in metrics and spans.
  c.res.statusCode = 505;
  const done = c.closed();
  (c.req as Http2ServerRequest).stream.close(constants.NGHTTP2_HTTP_1_1_REQUIRED);
  return done;
}
