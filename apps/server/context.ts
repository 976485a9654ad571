/**
 * The per-request context handed to handlers and middleware: request
 * accessors (params, query, headers, cookies, body, client IP, request id),
 * response helpers (text, json, html, redirect, stream, server-sent events)
 * and a child logger carrying the request id. Everything not needed by a
 * plain `c.text()` route is parsed lazily, on first use.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  Http2ServerRequest,
  Http2ServerResponse,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
  sensitiveHeaders,
} from 'node:http2';
import type { Socket } from 'node:net';
// Imported: Node 20's global `performance` is a lazy getter, paid on every read.
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import type { PeerCertificate } from 'node:tls';
import type { Span } from '@opentelemetry/api';
import { parseCookie, type SerializeOptions, stringifySetCookie } from 'cookie';
import type { Logger } from 'pino';
import { HypError } from '../../supervisor/errors.js';
import type { App } from './app.js';
import { type BodyKind, type BodyTypes, kindOf, parseBody, readBody } from './body.js';
import type { Protocol } from './clientip.js';
import { handedOverEnded, reviveEmptyBody } from './http/empty-requests.js';
import { originForm } from './prefix.js';
import type { Route } from './router.js';
import { type SseOptions, SseStream } from './sse.js';
import { verifiedPeerCertificate } from './tls/peer.js';

/** HTTP/1.1 or HTTP/2 (compat API) request. */
export type HttpRequest = IncomingMessage | Http2ServerRequest;
/** HTTP/1.1 or HTTP/2 (compat API) response. */
export type HttpResponse = ServerResponse | Http2ServerResponse;

export interface BodyOptions {
  /** Byte limit for this read (default `server.limits.body_limit`). */
  limit?: number;
}

const textPlain = 'text/plain; charset=utf-8';
const textHtml = 'text/html; charset=utf-8';
const applicationJson = 'application/json; charset=utf-8';
const validRequestId = /^[\w.:@+=/-]{1,128}$/;
// HPACK: a request id never repeats, so adding it to the peer's dynamic table
// would only evict entries that do (measured: ~4 % of an h2c hello-world).
const neverIndexed = ['x-request-id'];

// Request ids: 6 random characters per process (36 bits), a dash and a base-36
// counter — unique across workers and pods, far cheaper than a UUID per request.
// Short on purpose: V8 keeps a concatenation under 13 characters (the first 60M
// ids of a process) flat, where a longer one is a rope that Node's header check
// must flatten on every response (measured: ~1 % of a hello-world request).
const idPrefix = `${randomBytes(6).toString('base64url').slice(0, 6)}-`;
let idCounter = 0;
function nextRequestId(): string {
  idCounter = (idCounter + 1) % Number.MAX_SAFE_INTEGER;
  return idPrefix + idCounter.toString(36);
}

export class Context {
  readonly method: string;
  /** The `x-request-id` of this request: the client's if well-formed, else a fresh one. */
  readonly requestId: string;
  /** `performance.now()` when routing finished. */
  readonly startedAt: number;
  /** The server span, when a tracer provider is registered. */
  span: Span | undefined = undefined;
  /** The `Allow` value of a 405 or automatic OPTIONS answer. */
  allow: string | undefined = undefined;

  private searchParams: URLSearchParams | undefined = undefined;
  private cookieJar: Record<string, string | undefined> | undefined = undefined;
  private childLog: Logger | undefined = undefined;
  private bodyBytes: Promise<Buffer> | undefined = undefined;
  private ip: string | undefined = undefined;
  private scheme: Protocol | undefined = undefined;
  private values: Map<string, unknown> | undefined = undefined;
  private mountedUrl: string | undefined = undefined;
  private closeWaiters: (() => void)[] | undefined = undefined;
  private abort: AbortController | undefined = undefined;
  private isClosed = false;
  private nodeReq: HttpRequest | undefined;
  private nodeRes: HttpResponse | undefined;
  /** HTTP/2 before its compat objects exist: the status to answer with. */
  private h2Status = 200;
  /** HTTP/2 answered on the stream before its compat objects existed. */
  private h2Ended = false;
  /** HTTP/1.1 without a body, handed over ended: revived when `c.req` is first handed out. */
  private endedOnArrival = false;

  /**
   * `req`/`res` are Node's request and response (HTTP/1.1, or HTTP/2's compat
   * API); or both undefined and `h2` the bare stream, for which the compat
   * pair is built only when something asks for `c.req` or `c.res` — the
   * answer helpers (`c.text`, `c.json`, ...) work on the stream itself.
   */
  constructor(
    /** @internal */ readonly app: App,
    req: HttpRequest | undefined,
    res: HttpResponse | undefined,
    /** @internal */ readonly matched: Route,
    readonly params: Readonly<Record<string, string | undefined>>,
    private readonly rawQuery: string,
    /** @internal */ readonly h2?: H2Stream,
  ) {
    this.nodeReq = req;
    this.nodeRes = res;
    let given: string | undefined;
    if (req !== undefined) {
      this.method = req.method ?? 'GET';
      given = requestHeader(req, 'x-request-id');
      this.endedOnArrival = handedOverEnded(req as IncomingMessage);
    } else {
      const headers = h2!.headers;
      this.method = headers[':method'] ?? 'GET';
      const id = headers['x-request-id'];
      given = typeof id === 'string' ? id : undefined;
    }
    this.startedAt = performance.now();
    this.requestId = given !== undefined && validRequestId.test(given) ? given : nextRequestId();
    // `x-request-id` is added as late as possible: `c.json()` and friends then
    // write the whole head in one call (see `end`); anything else that writes
    // through `c.res` gets it set first (see `res`).
  }

  /**
   * The Node request (HTTP/2: the compat request, built on first use). A
   * request without a body reads as Node's usual stream: an empty body, then
   * 'end' and 'close' (see http/empty-requests.ts).
   */
  get req(): HttpRequest {
    if (this.endedOnArrival) {
      this.endedOnArrival = false;
      reviveEmptyBody(this.nodeReq as IncomingMessage);
    }
    return this.request;
  }

  /** @internal The request, for hyp's own reads of it (never its stream events); `req` is the public view. */
  get request(): HttpRequest {
    return this.nodeReq ?? this.compat().req;
  }

  /** @internal The response; `res` is the public view. */
  get response(): HttpResponse {
    return this.nodeRes ?? this.compat().res;
  }

  /** @internal The status answered (or to be answered). */
  get statusCode(): number {
    return this.nodeRes === undefined ? this.h2Status : this.nodeRes.statusCode;
  }

  /** @internal The response has been ended (not necessarily flushed). */
  get answered(): boolean {
    return this.nodeRes === undefined ? this.h2Ended : this.nodeRes.writableEnded;
  }

  /** @internal The response head has gone out (the status is the client's to see). */
  get headSent(): boolean {
    return this.nodeRes === undefined
      ? this.h2Ended || this.h2!.stream.headersSent
      : this.nodeRes.headersSent;
  }

  /** Build HTTP/2's compat request and response, as Node's own dispatch would. */
  private compat(): { req: Http2ServerRequest; res: Http2ServerResponse } {
    const h2 = this.h2!;
    const req = new Http2ServerRequest(h2.stream, h2.headers, {}, h2.rawHeaders);
    const res = new Http2ServerResponse(h2.stream);
    this.nodeReq = req;
    this.nodeRes = res;
    if (this.h2Ended) res.end();
    else if (this.h2Status !== 200) res.statusCode = this.h2Status;
    return { req, res };
  }

  /**
   * The Node response. Handing it out sets `x-request-id` on it (unless the
   * head is out or the header is set), so whatever writes through it — a
   * mounted app, a stream, a handler of your own — carries the request id.
   */
  get res(): HttpResponse {
    const res = this.response;
    if (!res.headersSent && !res.hasHeader('x-request-id')) res.setHeader('x-request-id', this.requestId);
    return res;
  }

  /** The route pattern that matched (`/users/:id`), or `(not found)`. */
  get route(): string {
    return this.matched.pattern;
  }

  /** The request headers (HTTP/2: without building the compat request; it shares this object). */
  private get headers(): IncomingHttpHeaders {
    return this.nodeReq !== undefined ? this.nodeReq.headers : this.h2!.headers;
  }

  /** The raw request path, without the query string (nor the `http://host` of an absolute-form target). */
  get path(): string {
    const url =
      this.mountedUrl ?? (this.nodeReq !== undefined ? this.nodeReq.url : this.h2!.headers[':path']) ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    return path.charCodeAt(0) === 47 /* / */ ? path : originForm(path);
  }

  /** A route parameter: `:id` → `c.param('id')`; the wildcard is `c.param('*')`. */
  param(name: string): string | undefined {
    return this.params[name];
  }

  /** First value of a query parameter. */
  query(name: string): string | undefined {
    return this.queryParams.get(name) ?? undefined;
  }

  /** Every value of a repeated query parameter (`?tag=a&tag=b`). */
  queries(name: string): string[] {
    return this.queryParams.getAll(name);
  }

  get queryParams(): URLSearchParams {
    this.searchParams ??= new URLSearchParams(this.rawQuery);
    return this.searchParams;
  }

  /** `c.header(name)` reads a request header; `c.header(name, value)` sets a response header. */
  header(name: string): string | undefined;
  header(name: string, value: string | number | readonly string[]): this;
  header(name: string, value?: string | number | readonly string[]): string | undefined | this {
    if (value === undefined) {
      // HTTP/1.1's headers object has a prototype: `constructor` is not a request header.
      const headers = this.headers;
      const key = name.toLowerCase();
      const v = Object.hasOwn(headers, key) ? headers[key] : undefined;
      // HTTP/2 names the authority in `:authority` and clients send no Host:
      // `c.header('host')` answers the same on either protocol.
      if (v === undefined && key === 'host') return headers[':authority'] as string | undefined;
      return Array.isArray(v) ? v.join(', ') : v;
    }
    this.res.setHeader(name, value);
    return this;
  }

  /** A request cookie. */
  cookie(name: string): string | undefined {
    const header = this.headers.cookie;
    this.cookieJar ??= header ? parseCookie(header) : noCookies;
    return this.cookieJar[name];
  }

  /** Append a `Set-Cookie` (defaults: `Path=/`, `HttpOnly`, `SameSite=Lax`). */
  setCookie(name: string, value: string, options: SerializeOptions = {}): this {
    const line = stringifySetCookie(name, value, { path: '/', httpOnly: true, sameSite: 'lax', ...options });
    const prev = this.res.getHeader('set-cookie');
    const lines = prev === undefined ? [line] : Array.isArray(prev) ? [...prev, line] : [String(prev), line];
    this.res.setHeader('set-cookie', lines);
    return this;
  }

  /** The client address, through `server.trusted_proxies` only. */
  get clientIp(): string {
    this.ip ??= this.app.clientIpOf(this.request);
    return this.ip;
  }

  /**
   * `'https'` or `'http'`: the connection's scheme or, when the socket peer
   * is in `server.trusted_proxies`, the first value of its
   * `X-Forwarded-Proto` if that is `http` or `https` (as Express's
   * `req.protocol`). Read on first use; HTTP/2 builds no compat objects for it.
   */
  get protocol(): Protocol {
    this.scheme ??= this.app.protocolOf(this.socket, this);
    return this.scheme;
  }

  /**
   * The certificate the TLS client presented, when it verified against
   * `server.tls.ca_file` (mTLS, `client_auth: request` or `require`);
   * undefined over cleartext, without a certificate, or with one that did
   * not verify — an unverified certificate names nobody.
   */
  get clientCert(): PeerCertificate | undefined {
    return verifiedPeerCertificate(this.socket);
  }

  /** The connection's socket (HTTP/2: its session's), without building HTTP/2's compat objects. */
  private get socket(): Socket | undefined {
    const req = this.nodeReq;
    return req === undefined
      ? this.h2!.stream.session?.socket
      : req.httpVersionMajor === 2
        ? (req as Http2ServerRequest).stream.session?.socket
        : req.socket;
  }

  /** The app logger with this request's id (and route) on every line. */
  get log(): Logger {
    this.childLog ??= this.app.log.child({
      request_id: this.requestId,
      method: this.method,
      route: this.route,
    });
    return this.childLog;
  }

  /** Per-request values shared between middleware and handlers. */
  set(key: string, value: unknown): this {
    this.values ??= new Map();
    this.values.set(key, value);
    return this;
  }
  get<T = unknown>(key: string): T | undefined {
    return this.values?.get(key) as T | undefined;
  }

  /** Aborted when the client goes away before the response is complete. */
  get signal(): AbortSignal {
    if (this.abort === undefined) {
      this.abort = new AbortController();
      if (this.isClosed && !this.answered) this.abort.abort();
    }
    return this.abort.signal;
  }

  /**
   * The request body: parsed by Content-Type when `kind` is omitted (JSON,
   * text, form → URLSearchParams, anything else raw bytes), or as `kind`.
   * Over the limit: 413 `HYP_E_BODY_TOO_LARGE`. Reading twice is fine.
   */
  body(): Promise<unknown>;
  body<K extends BodyKind>(kind: K, options?: BodyOptions): Promise<BodyTypes[K]>;
  async body(kind?: BodyKind, options: BodyOptions = {}): Promise<unknown> {
    const type = this.request.headers['content-type'];
    const as = kind ?? kindOf(type);
    if (as === undefined) throw new HypError('HYP_E_UNSUPPORTED_MEDIA_TYPE', { type: String(type) });
    this.bodyBytes ??= readBody(this.request, options.limit ?? this.app.bodyLimit);
    return parseBody(await this.bodyBytes, as, type);
  }

  /** @internal The body bytes, if something read them through `c.body()`. */
  get bodyRead(): Promise<Buffer> | undefined {
    return this.bodyBytes;
  }

  /** Set the response status. */
  status(code: number): this {
    if (!Number.isInteger(code) || code < 100 || code > 999)
      throw new TypeError(`invalid HTTP status ${code}`);
    // A 1xx is not an answer: the client would go on waiting for the real one.
    if (code < 200)
      throw new TypeError(`HTTP status ${code} is informational (1xx), not a final answer; use 200-999`);
    // HTTP/2 allows 200-599 here; outside that, the compat response raises Node's own error.
    if (this.nodeRes === undefined && code >= 200 && code <= 599) this.h2Status = code;
    else this.response.statusCode = code;
    return this;
  }

  text(body: string, status?: number): void {
    this.end(textPlain, body, status);
  }

  html(body: string, status?: number): void {
    this.end(textHtml, body, status);
  }

  json(value: unknown, status?: number): void {
    this.end(applicationJson, JSON.stringify(value) ?? 'null', status);
  }

  /**
   * Bytes or a string with a content type. As with `c.text`, `c.html`,
   * `c.json` and `c.stream`, a Content-Type already set with `c.header()` wins.
   */
  send(body: string | Uint8Array, contentType = 'application/octet-stream', status?: number): void {
    this.end(contentType, body, status);
  }

  /**
   * An answer without content: `status`, else the one set with `c.status()`
   * (`c.status(202).empty()`, as `c.json()` takes it), else 204. On
   * HTTP/1.1, 204 and 304 carry no `Content-Length` (RFC 9110 §8.6) and any
   * other status says 0; HTTP/2 ends the stream with the head.
   */
  empty(status?: number): void {
    if (status !== undefined) this.status(status);
    else if (this.statusCode === 200) this.status(204);
    if (this.nodeRes === undefined) {
      this.emptyOnStream(this.h2!.stream, this.h2Status);
      this.h2Ended = true;
      return;
    }
    // Node's own `end()` frames each status right, 204/304 included.
    this.res.end();
  }

  /**
   * Answer with `Location: location`: `status`, else a 3xx set with
   * `c.status()` (`c.status(301).redirect(url)`, as Fastify's
   * `reply.code(301).redirect(url)`), else 302. Spaces, control characters
   * and non-ASCII are percent-encoded (UTF-8), so a location built from
   * request data can neither inject a header nor go out as latin1 bytes;
   * `%XX` already there is kept. The location is not otherwise checked: one
   * taken from the request can send the client to another site.
   */
  redirect(location: string, status?: number): void {
    if (status === undefined) {
      const set = this.statusCode;
      status = set >= 300 && set <= 399 ? set : 302;
    }
    if (status < 300 || status > 399) throw new TypeError(`redirect status must be 3xx, got ${status}`);
    this.res.setHeader('location', encodeLocation(location));
    this.empty(status);
  }

  /**
   * Stream a Node readable, a web ReadableStream or an async iterable of
   * chunks. The source is destroyed whenever the answer cannot complete: the
   * client left (then this rejects with 400 `HYP_E_BAD_REQUEST`, which is
   * logged at debug level only), the request was already answered, or the
   * source failed. A source that fails before its first chunk leaves the
   * response untouched, so the failure is answered like any thrown error. A
   * `Content-Length` you set is held to: a source that gives fewer or more
   * bytes gets the response cut (`HYP_E_STREAM_LENGTH`), never a body that
   * runs into the next response on the connection.
   */
  async stream(
    source: Readable | ReadableStream<Uint8Array> | AsyncIterable<string | Uint8Array>,
    contentType = 'application/octet-stream',
  ): Promise<void> {
    const readable =
      source instanceof Readable
        ? source
        : source instanceof ReadableStream
          ? Readable.fromWeb(source as import('node:stream/web').ReadableStream<Uint8Array>)
          : Readable.from(source);
    let res: HttpResponse;
    try {
      // The client is gone. HTTP/2's compat response, if built after (or
      // written to only after) its stream closed, would never emit again and
      // a pipe would wait on it forever, holding the source open.
      if (this.isClosed) throw clientGone();
      if (this.answered) throw new Error('c.stream(): this request has already been answered');
      res = this.res;
      if (!res.hasHeader('content-type')) res.setHeader('content-type', contentType);
    } catch (err) {
      readable.destroy();
      throw err;
    }
    if (this.method === 'HEAD') {
      readable.destroy();
      res.end();
      return;
    }
    await pump(readable, res);
  }

  /**
   * Start a server-sent event stream (`text/event-stream`, no caching, no
   * proxy buffering). A HEAD request gets the head alone: the stream is
   * returned closed (its `signal` aborted), and the connection is free for
   * the client's next request.
   */
  sse(options: SseOptions = {}): SseStream {
    const res = this.res;
    res.statusCode = 200;
    res.setHeader('content-type', 'text/event-stream; charset=utf-8');
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('x-accel-buffering', 'no');
    const sse = new SseStream(res, this.signal, options, (buffered, limit) =>
      this.log.warn(
        { code: 'HYP_E_SSE_SLOW_CONSUMER', buffered },
        new HypError('HYP_E_SSE_SLOW_CONSUMER', { limit }).message,
      ),
    );
    if (this.method === 'HEAD') {
      // No body will follow: an open response would hold the connection (and
      // the client's next request behind it) for as long as the handler sends.
      sse.close();
      return sse;
    }
    // Open streams are closed with a reconnect hint when the worker drains;
    // one opened after that is closed so at once.
    if (!this.app.trackEventStream(sse)) return sse;
    if (this.request.httpVersionMajor === 1) {
      res.setHeader('connection', 'keep-alive');
      (res as ServerResponse).flushHeaders();
    } else {
      (res as Http2ServerResponse).writeHead(200);
    }
    return sse;
  }

  /** Answer with the app's not-found handler (what an unmatched request gets). */
  notFound(): unknown {
    return this.app.answerNotFound(this);
  }

  /** Resolves when the response has closed (sent, or the client went away). */
  closed(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    return new Promise((resolve) => {
      this.closeWaiters ??= [];
      this.closeWaiters.push(resolve);
    });
  }

  /** @internal Mount: run the mounted app on `inner`, restore `original` at close. */
  rewriteUrl(original: string, inner: string): void {
    this.mountedUrl ??= original;
    this.request.url = inner;
  }

  /** @internal Called once when the response closes. */
  onClose(): void {
    this.isClosed = true;
    if (this.mountedUrl !== undefined) this.request.url = this.mountedUrl;
    if (this.abort !== undefined && !this.answered) this.abort.abort();
    if (this.closeWaiters !== undefined) for (const resolve of this.closeWaiters) resolve();
  }

  /**
   * A whole HTTP/2 answer on the stream. The compat layer would re-copy the
   * headers and always ask for trailers, which costs a second HEADERS frame
   * per response. A stream the client already reset gets nothing.
   */
  private answerOnStream(
    stream: ServerHttp2Stream,
    status: number,
    type: string,
    length: number,
    body: string | Uint8Array,
  ): void {
    if (stream.headersSent || stream.destroyed || stream.closed) return;
    const head = this.method === 'HEAD';
    stream.respond(
      {
        ':status': status,
        'content-type': type,
        'content-length': length,
        'x-request-id': this.requestId,
        [sensitiveHeaders]: neverIndexed,
      },
      { endStream: head },
    );
    if (!head) stream.end(body);
  }

  /** `empty()` on the bare stream: the head alone; END_STREAM frames it (as Node's compat `end()` does). */
  private emptyOnStream(stream: ServerHttp2Stream, status: number): void {
    if (stream.headersSent || stream.destroyed || stream.closed) return;
    stream.respond(
      { ':status': status, 'x-request-id': this.requestId, [sensitiveHeaders]: neverIndexed },
      { endStream: true },
    );
  }

  private end(type: string, body: string | Uint8Array, status: number | undefined): void {
    if (status !== undefined) this.status(status);
    const code = this.statusCode;
    if (code === 204 || code === 205 || code === 304) {
      // These never have content (RFC 9110 §15.3.5, §15.3.6, §15.4.5): the body
      // is dropped, as Node's HTTP/1.1 would; HTTP/2 would reset the stream.
      this.empty(code);
      return;
    }
    const length = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
    if (this.nodeRes === undefined) {
      // HTTP/2, nothing asked for the compat objects: the head straight onto
      // the stream, as a hand-written node:http2 handler would.
      this.answerOnStream(this.h2!.stream, code, type, length, body);
      this.h2Ended = true;
      return;
    }
    const res = this.nodeRes;
    if (this.request.httpVersionMajor === 1) {
      const h1 = res as ServerResponse;
      if (h1.getHeaderNames().length === 0) {
        // Nothing set yet (the common case): the whole head in one call, as a
        // hand-written node:http handler would, with no per-header bookkeeping.
        // A flat [name, value, ...] list: Node walks it by index, where an
        // object costs a for-in and a hasOwn per header (~190 ns on Node 20).
        h1.writeHead(h1.statusCode, [
          'content-type',
          type,
          'content-length',
          length,
          'x-request-id',
          this.requestId,
        ]);
      } else {
        if (!h1.hasHeader('x-request-id')) h1.setHeader('x-request-id', this.requestId);
        // A type the handler set (`application/problem+json`) is kept, as Express and Fastify keep it.
        if (!h1.hasHeader('content-type')) h1.setHeader('content-type', type);
        h1.setHeader('content-length', length);
      }
      if (this.method === 'HEAD') h1.end();
      else h1.end(body);
      return;
    }
    const h2 = res as Http2ServerResponse;
    if (h2.getHeaderNames().length === 0) {
      // Nothing set yet: as above, then `h2.end()` only marks the compat
      // response ended (its stream already is).
      this.answerOnStream(h2.stream, h2.statusCode, type, length, body);
      h2.end();
      return;
    }
    if (!h2.hasHeader('x-request-id')) h2.setHeader('x-request-id', this.requestId);
    // The HTTP/2 compat layer does not set Content-Length itself.
    if (!h2.hasHeader('content-type')) h2.setHeader('content-type', type);
    h2.setHeader('content-length', length);
    if (this.method === 'HEAD') res.end();
    else (res as Http2ServerResponse).end(body);
  }
}

function clientGone(): HypError {
  return new HypError('HYP_E_BAD_REQUEST', {
    detail: 'client went away before the response was complete',
  });
}

/**
 * `c.stream()`'s copy of `source` into `res`, with backpressure. Unlike
 * `pipeline`, it leaves `res` alone when the source fails (the caller's
 * error handling answers 500, or cuts a response already under way); it
 * destroys the source when the client leaves; and it holds the source to a
 * declared `Content-Length`: on HTTP/1.1 a shorter body would swallow the
 * next response on the connection, a longer one would precede it.
 */
async function pump(source: Readable, res: HttpResponse): Promise<void> {
  const declared = res.getHeader('content-length');
  const announced = declared === undefined ? -1 : Number(declared);
  let sent = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const onClose = () => {
    if (!res.writableFinished) failure ??= clientGone();
    source.destroy();
    wake?.();
  };
  // Without a listener, an 'error' the response emits (a write after its
  // end, a socket error) would be an uncaught exception.
  const onError = (err: unknown) => {
    failure ??= err;
    wake?.();
  };
  const onDrain = () => wake?.();
  res.on('close', onClose);
  res.on('error', onError);
  res.on('drain', onDrain);
  res.on('finish', onDrain);
  const wait = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
    });
  try {
    for await (const chunk of source as AsyncIterable<string | Uint8Array>) {
      if (failure !== undefined) break;
      if (announced >= 0) {
        sent += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
        if (sent > announced)
          throw new HypError('HYP_E_STREAM_LENGTH', { sent: `more than ${announced}`, announced });
      }
      if (!(res as ServerResponse).write(chunk) && failure === undefined) await wait();
    }
    if (failure !== undefined) throw failure;
    if (announced >= 0 && sent !== announced) throw new HypError('HYP_E_STREAM_LENGTH', { sent, announced });
    res.end();
    while (!res.writableFinished && failure === undefined) await wait();
    if (failure !== undefined) throw failure;
  } catch (err) {
    source.destroy();
    // The source's own complaint about being destroyed is not the news.
    throw failure ?? err;
  } finally {
    wake = undefined;
    res.off('close', onClose);
    res.off('error', onError);
    res.off('drain', onDrain);
    res.off('finish', onDrain);
  }
}

/** `c.cookie()` without a Cookie header: no prototype, so `__proto__` or `constructor` is no cookie. */
const noCookies: Record<string, string | undefined> = Object.freeze(Object.create(null));

/** Outside printable ASCII: not allowed as is in a `Location` (RFC 3986), or not a header byte at all. */
const unsafeInLocation = /[^\x21-\x7e]/;
const unsafeRuns = /[^\x21-\x7e]+/g;

function encodeLocation(location: string): string {
  if (!unsafeInLocation.test(location)) return location;
  try {
    return location.replace(unsafeRuns, (run) => encodeURI(run));
  } catch {
    throw new TypeError('redirect location is not well-formed Unicode (it has a lone surrogate)');
  }
}

/** An HTTP/2 request as the engine's 'stream' event delivers it. */
export interface H2Stream {
  readonly stream: ServerHttp2Stream;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
}

/**
 * One request header without materialising `req.headers` on HTTP/1.1
 * (Node builds that object lazily; a plain route never needs it).
 */
function requestHeader(req: HttpRequest, name: string): string | undefined {
  if (req.httpVersionMajor === 2) {
    const v = req.headers[name];
    return typeof v === 'string' ? v : undefined;
  }
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i]!;
    if (key.length === name.length && key.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}
