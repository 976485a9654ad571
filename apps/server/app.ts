/**
 * The application object handed to `defineApp(app => ...)`: routes,
 * middleware, static files, mounted Node handlers, TCP services and the
 * WebSocket hub all register here. The worker runtime turns it into servers.
 */

import { type IncomingMessage, ServerResponse } from 'node:http';
import {
  Http2ServerRequest,
  type Http2ServerResponse,
  constants as h2constants,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { context as otelContext, type Tracer } from '@opentelemetry/api';
import { Value } from '@sinclair/typebox/value';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { type Config, ConfigSchema } from '../../supervisor/config/schema.js';
import { sizeBytes } from '../../supervisor/config/units.js';
import { catalog, type ErrorCode, HypError } from '../../supervisor/errors.js';
import type { Logger } from '../../supervisor/log.js';
import {
  type ClientIpResolver,
  clientIpResolver,
  type ProtocolResolver,
  protocolResolver,
} from './clientip.js';
import { Context, type H2Stream, type HttpRequest, type HttpResponse } from './context.js';
import { RouteGroup } from './group.js';
import { destroySocket, isWebSocketUpgrade, refuseUpgrade } from './http/upgrade.js';
import { type Handler, noParams, Route, Router, unmatchedRoute } from './router.js';
import type { SseStream } from './sse.js';
import { registerTcpService } from './tcp/services.js';
import type { TcpHandler, TcpRegistration, TcpServiceOptions } from './tcp/types.js';
import { HttpMetrics, type HttpSeries, methodLabel } from './telemetry/metrics.js';
import { HttpTracing } from './telemetry/tracing.js';
import { createHub, type Hub, type HubOptions } from './ws/hub.js';
import { hubOptionsFromConfig } from './ws/options.js';

export interface AppContext {
  config: Config;
  log: Logger;
  workerId: number;
  generation: number;
  /** Aborted when this worker starts draining. */
  signal: AbortSignal;
}

export type AppSetup = (app: App, ctx: AppContext) => void | Promise<void>;

export interface AppDefinition {
  readonly kind: 'hyp.app';
  readonly setup: AppSetup;
}

/** `export default defineApp(app => { app.get('/', c => c.text('hi')) })` */
export function defineApp(setup: AppSetup): AppDefinition {
  if (typeof setup !== 'function') throw new TypeError('defineApp(setup): setup must be a function');
  return { kind: 'hyp.app', setup };
}

export function isAppDefinition(value: unknown): value is AppDefinition {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as AppDefinition).kind === 'hyp.app' &&
    typeof (value as AppDefinition).setup === 'function'
  );
}

export type { Handler, Middleware } from './router.js';

/** Last-resort handler for thrown errors: answer through `c`, or rethrow for the default problem body. */
export type ErrorHandler = (err: unknown, c: Context) => unknown;

type ShutdownHook = () => void | Promise<void>;

export interface AppOptions {
  /** Resolved config (`server.limits.body_limit`, `server.trusted_proxies`, `server.router.*`); defaults otherwise. */
  config?: Config;
  log?: Logger;
  /** The worker's prom-client registry; the HTTP metrics register here. */
  registry?: Registry;
  /** A tracer to use instead of the globally registered provider's. */
  tracer?: Tracer;
  /** The worker's id (bus node ids); undefined outside a worker. */
  workerId?: number;
}

const { NGHTTP2_INTERNAL_ERROR } = h2constants;
const kContext = Symbol('hyp.context');
type TaggedResponse = HttpResponse & { [kContext]?: Context };
type TaggedStream = ServerHttp2Stream & { [kContext]?: Context };
const internalProblem = new HypError('HYP_E_INTERNAL').toProblem();
/**
 * Response headers kept when an error replaces a half-built answer: those
 * about the request, the resource, the client's session or the site, not
 * the answer. `Set-Cookie`: a session a middleware refreshed before the
 * handler threw stays refreshed (Express and Fastify keep it). The security
 * policies a helmet-style middleware sets hold for an error too. And any
 * `access-control-*`: without them a cross-origin browser client cannot
 * read the error at all. `Cache-Control`, `ETag`, `Location`, `Content-*`
 * and the rest described the answer that never went out: dropped.
 */
const keptOnError = new Set([
  'x-request-id',
  'allow',
  'vary',
  'set-cookie',
  'strict-transport-security',
  'content-security-policy',
  'content-security-policy-report-only',
  'x-content-type-options',
  'x-frame-options',
  'referrer-policy',
  'permissions-policy',
  'cross-origin-opener-policy',
  'cross-origin-embedder-policy',
  'cross-origin-resource-policy',
]);
const corsHeader = 'access-control-';

/**
 * The application: the root route group (its `use()` middleware is global),
 * 404/405/error policies, TCP services, and `handle`, the Node request
 * listener the HTTP/1.1 and HTTP/2 servers call.
 */
export class App extends RouteGroup {
  readonly config: Config;
  readonly log: Logger;
  readonly registry: Registry;
  readonly workerId: number | undefined;
  /** `server.limits.body_limit` in bytes: the default limit of `c.body()`. */
  readonly bodyLimit: number;
  readonly clientIpOf: ClientIpResolver;
  /** @internal `c.protocol`: the socket's scheme, or a trusted proxy's `X-Forwarded-Proto`. */
  readonly protocolOf: ProtocolResolver;

  private readonly routes: Router;
  private readonly metrics: HttpMetrics;
  private readonly tracing: HttpTracing;
  private readonly shutdownHooks: ShutdownHook[] = [];
  private notFoundHandler: Handler = defaultNotFound;
  private methodNotAllowedHandler: Handler = defaultMethodNotAllowed;
  private errorHandler: ErrorHandler | undefined = undefined;
  private readonly notFoundRoute: Route;
  private readonly methodNotAllowedRoute: Route;
  private readonly optionsRoute: Route;
  /** Answers 400 to the asterisk-form target (`*`) with a method other than OPTIONS. */
  private readonly asteriskRoute: Route;
  /** Answers 400 to a URL whose path cannot be percent-decoded. */
  private readonly badUrlRoute: Route;

  constructor(options: AppOptions = {}) {
    const config = options.config ?? (Value.Default(ConfigSchema, {}) as Config);
    const badUrlRoute = new Route('*', unmatchedRoute, badUrl, () => []);
    const router = new Router(
      {
        ignoreTrailingSlash: config.server.router?.ignore_trailing_slash,
        caseSensitive: config.server.router?.case_sensitive,
      },
      badUrlRoute,
    );
    super(router, '');
    this.routes = router;
    this.badUrlRoute = badUrlRoute;
    this.config = config;
    this.log = options.log ?? pino({ level: 'silent' });
    this.registry = options.registry ?? new Registry();
    this.workerId = options.workerId;
    this.bodyLimit = sizeBytes(config.server.limits.body_limit);
    this.clientIpOf = clientIpResolver(config.server.trusted_proxies);
    this.protocolOf = protocolResolver(config.server.trusted_proxies);
    this.metrics = new HttpMetrics(this.registry);
    this.tracing = new HttpTracing(options.tracer);
    const none = () => [];
    this.notFoundRoute = new Route('*', unmatchedRoute, (c) => this.notFoundHandler(c), none);
    this.methodNotAllowedRoute = new Route('*', unmatchedRoute, (c) => this.methodNotAllowedHandler(c), none);
    this.optionsRoute = new Route('*', unmatchedRoute, (c) => c.empty(204), none);
    this.asteriskRoute = new Route('*', unmatchedRoute, (c) => c.json(asteriskProblem, 400), none);
  }

  /** Handler for requests no route matches (default: 404 `HYP_E_NOT_FOUND` problem body). */
  notFound(handler: Handler): this {
    this.notFoundHandler = checkHandler('notFound', handler);
    return this;
  }

  /** Handler for a path that exists under other methods; `Allow` is already set (default: 405 problem body). */
  methodNotAllowed(handler: Handler): this {
    this.methodNotAllowedHandler = checkHandler('methodNotAllowed', handler);
    return this;
  }

  /** Handler for errors thrown by routes and middleware (default: catalog status + problem body). */
  onError(handler: ErrorHandler): this {
    if (typeof handler !== 'function') throw new TypeError('onError(handler): handler must be a function');
    this.errorHandler = handler;
    return this;
  }

  /** The route table as text. */
  printRoutes(): string {
    return this.routes.print();
  }

  /** Raw TCP services registered with `tcp()`, by name (each needs `tcp.<name>.addr` in config). */
  readonly tcpServices = new Map<string, TcpRegistration>();

  /** A raw TCP service: `handler` runs once per connection on the listener `tcp.<name>`. */
  tcp<S extends object = Record<string, unknown>>(
    name: string,
    handler: TcpHandler<S>,
    options?: TcpServiceOptions<S>,
  ): this {
    registerTcpService(this.tcpServices, name, handler, options);
    return this;
  }

  /** WebSocket hubs mounted with `websocket()`, by path. */
  readonly websockets = new Map<string, Hub>();
  /** Mounted paths by their `hubKey`: upgrades follow the router's slash and case policy. */
  private readonly hubPaths = new Map<string, string>();

  /** A path as the router compares it: without a trailing slash when those are ignored, lower case when case-insensitive. */
  private hubKey(path: string): string {
    const router = this.config.server.router;
    let key = path;
    if ((router?.ignore_trailing_slash ?? true) && key.length > 1 && key.endsWith('/'))
      key = key.slice(0, -1);
    if (!(router?.case_sensitive ?? true)) key = key.toLowerCase();
    return key;
  }

  /**
   * Mount a WebSocket hub: upgrades on `path` (default `websocket.path`) go to
   * it. Options default from the `websocket` config section; the bus (IPC
   * across workers, or Redis across pods) and history come from there too.
   */
  websocket(path: string = this.config.websocket.path, options: HubOptions = {}): Hub {
    if (this.websockets.has(path))
      throw new TypeError(`websocket(${path}): a hub is already mounted on this path`);
    const key = this.hubKey(path);
    const same = this.hubPaths.get(key);
    if (same !== undefined)
      throw new TypeError(
        `websocket(${path}): the hub on ${same} already answers this path (server.router policy)`,
      );
    const defaults = hubOptionsFromConfig(this.config, {
      registry: this.registry,
      log: this.log,
      workerId: this.workerId,
      path,
    });
    const hub = createHub({ ...defaults, name: path, ...options });
    this.websockets.set(path, hub);
    this.hubPaths.set(key, path);
    this.onShutdown(() => hub.close());
    return hub;
  }

  /** The `upgrade` listener the HTTP/1.1 server calls: hand the socket to the hub of that path, else 404. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // As in `handle`: a request line that is not HTTP/1.x gets 505 before any routing.
    if (req.httpVersionMajor !== 1) {
      refuseUpgrade(socket, new HypError('HYP_E_HTTP_VERSION', { version: req.httpVersion }));
      return;
    }
    if (!isWebSocketUpgrade(req)) {
      this.serveIgnoringUpgrade(req, socket as Socket);
      return;
    }
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    const hub = this.websockets.get(path) ?? this.websockets.get(this.hubPaths.get(this.hubKey(path)) ?? '');
    if (!hub) {
      refuseUpgrade(socket, new HypError('HYP_E_NOT_FOUND', { method: req.method, path: url }));
      return;
    }
    hub.handleUpgrade(req, socket, head);
  };

  /**
   * An `Upgrade` other than WebSocket (`h2c` from `curl --http2`, ...) on a
   * Node without `shouldUpgradeCallback` (< 24.9): answered as the plain
   * HTTP/1.1 request it also is, on a response of its own, then the
   * connection closes. Node has stopped parsing the socket, so a request
   * body could not be read: one is refused with 400.
   */
  private serveIgnoringUpgrade(req: IncomingMessage, socket: Socket): void {
    const length = req.headers['content-length'];
    if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
      refuseUpgrade(
        socket,
        new HypError('HYP_E_BAD_REQUEST', {
          detail: `a request with a body cannot ask for Upgrade: ${req.headers.upgrade}; send it without`,
        }),
      );
      return;
    }
    socket.on('error', destroySocket);
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.once('finish', () => {
      res.detachSocket(socket);
      socket.destroySoon();
    });
    this.handle(req, res);
  }

  /** Open server-sent event streams (`c.sse()`), closed with a reconnect hint at drain. */
  private readonly eventStreams = new Set<SseStream>();
  /** The `retry:` spread of a drain that has begun, else undefined. */
  private eventStreamSpreadMs: number | undefined = undefined;

  /**
   * @internal Keep `sse` until it ends, to close it at drain. When the drain
   * has begun, close it now (with its reconnect hint) and return false.
   */
  trackEventStream(sse: SseStream): boolean {
    if (this.eventStreamSpreadMs !== undefined) {
      sse.drain(Math.random() * this.eventStreamSpreadMs);
      return false;
    }
    // Over already (its client left while an async handler ran): an aborted signal fires no more.
    if (sse.signal.aborted) return true;
    this.eventStreams.add(sse);
    sse.signal.addEventListener('abort', () => this.eventStreams.delete(sse), { once: true });
    return true;
  }

  /**
   * The worker drains: close every open event stream, each with a `retry:`
   * of a random delay under `spreadMs` (`drain.websocket_spread`), so their
   * clients reconnect elsewhere, spread out, instead of holding the drain to
   * its deadline. Streams opened from now on are closed the same way.
   * Returns how many were closed.
   */
  drainEventStreams(spreadMs: number): number {
    this.eventStreamSpreadMs = Math.max(0, spreadMs);
    const open = [...this.eventStreams];
    this.eventStreams.clear();
    for (const sse of open) sse.drain(Math.random() * this.eventStreamSpreadMs);
    return open.length;
  }

  /** Run at drain, after servers stop accepting. */
  onShutdown(hook: ShutdownHook): this {
    this.shutdownHooks.push(hook);
    return this;
  }

  /**
   * Run every onShutdown hook, in order, each after the one before settled.
   * A hook that throws does not skip the rest (the hub's close, the app's
   * own cleanup): the first failure is rethrown once all have run, or an
   * AggregateError when several failed.
   */
  async shutdown(): Promise<void> {
    const failures: unknown[] = [];
    for (const hook of this.shutdownHooks) {
      try {
        await hook();
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `${failures.length} onShutdown hooks failed`);
  }

  /** The Node request listener (HTTP/1.1, and HTTP/2 through the compat API). */
  readonly handle = (req: HttpRequest, res: HttpResponse): void => {
    // llhttp also parses `HTTP/2.0` and HTTP/0.9 request lines; everything
    // downstream takes a major version 2 for the HTTP/2 compat objects.
    if (req.httpVersionMajor !== 1 && !(req instanceof Http2ServerRequest)) {
      refuseHttpVersion(req, res as ServerResponse);
      return;
    }
    if (this.routes.stale) this.compile();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const match = this.routes.find(method, url);
    const c =
      match === null
        ? this.unmatched(req, res, method, url)
        : new Context(this, req, res, match.store, match.params, match.searchParams);
    this.serve(c, method, match === null ? undefined : match.store.pattern, res);
  };

  /**
   * The HTTP/2 engine's 'stream' listener: as `handle`, but Node's compat
   * request and response are built only if the handler asks for `c.req` or
   * `c.res` (reading headers or cookies through `c.header`/`c.cookie` does not).
   */
  readonly handleStream = (
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    rawHeaders: string[],
  ): void => {
    if (this.routes.stale) this.compile();
    const method = headers[':method'] ?? 'GET';
    const url = headers[':path'] ?? '/';
    const h2 = { stream, headers, rawHeaders };
    const match = this.routes.find(method, url);
    const c =
      match === null
        ? this.unmatched(undefined, undefined, method, url, h2)
        : new Context(this, undefined, undefined, match.store, match.params, match.searchParams, h2);
    this.serve(c, method, match === null ? undefined : match.store.pattern, stream);
  };

  /**
   * Count the request in flight, run its chain (inside its server span when
   * tracing) and account for it when it is done: now if it was answered
   * synchronously (the common case, no listener), else at the 'close' of
   * `closer` (the response, or the HTTP/2 stream), which is never emitted
   * synchronously, so none is missed.
   */
  private serve(
    c: Context,
    method: string,
    pattern: string | undefined,
    closer: TaggedResponse | TaggedStream,
  ): void {
    this.metrics.inFlight++;
    if (this.tracing.enabled) {
      const traced = this.tracing.start(c.request, method, c.path, pattern, c.clientIp, c.protocol);
      c.span = traced.span;
      otelContext.with(traced.context, this.run, this, c);
    } else {
      this.run(c);
    }
    if (c.answered) {
      this.finish(c);
    } else {
      closer[kContext] = c;
      // 'close' comes once: `on`, which wraps nothing (`once` would).
      closer.on('close', onResponseClose);
    }
  }

  /** @internal What `c.notFound()` runs. */
  answerNotFound(c: Context): unknown {
    return this.notFoundHandler(c);
  }

  private run(c: Context): void {
    let result: unknown;
    try {
      result = c.matched.run(c);
    } catch (err) {
      this.fail(c, err);
      return;
    }
    if (result instanceof Promise) result.then(undefined, (err: unknown) => this.fail(c, err));
  }

  /** A context for a request no route matched: the 404, 405 or automatic OPTIONS route. */
  private unmatched(
    req: HttpRequest | undefined,
    res: HttpResponse | undefined,
    method: string,
    url: string,
    h2?: H2Stream,
  ): Context {
    // The asterisk-form target (`OPTIONS * HTTP/1.1`) asks about the server, not a resource.
    if (url === '*') return this.asterisk(req, res, method, h2);
    const allowed = this.routes.allowed(url);
    if (allowed === null) return new Context(this, req, res, this.badUrlRoute, noParams, '', h2);
    const route =
      allowed.length === 0
        ? this.notFoundRoute
        : method === 'OPTIONS'
          ? this.optionsRoute
          : this.methodNotAllowedRoute;
    const q = url.indexOf('?');
    const c = new Context(this, req, res, route, noParams, q < 0 ? '' : url.slice(q + 1), h2);
    if (allowed.length > 0) {
      if (!allowed.includes('OPTIONS')) allowed.push('OPTIONS');
      c.allow = allowed.sort().join(', ');
      c.response.setHeader('allow', c.allow);
    }
    return c;
  }

  /** `OPTIONS *`: 204 with every method the server serves; any other method with `*` is 400. */
  private asterisk(
    req: HttpRequest | undefined,
    res: HttpResponse | undefined,
    method: string,
    h2: H2Stream | undefined,
  ): Context {
    if (method !== 'OPTIONS') return new Context(this, req, res, this.asteriskRoute, noParams, '', h2);
    const c = new Context(this, req, res, this.optionsRoute, noParams, '', h2);
    c.allow = this.routes.served().join(', ');
    c.response.setHeader('allow', c.allow);
    return c;
  }

  private compile(): void {
    const global = this.middleware;
    this.routes.compile(global);
    this.notFoundRoute.compile(global);
    this.methodNotAllowedRoute.compile(global);
    this.optionsRoute.compile(global);
    this.asteriskRoute.compile(global);
    this.tracing.resolve();
  }

  /**
   * @internal An error of a middleware chain no middleware handed on (one
   * that did not await `next()`, or swallowed the rejection without
   * answering): mapped as if thrown, since nothing else will answer; one
   * thrown after the answer is reported as if thrown (onError, else logged).
   */
  strayError(c: Context, err: unknown): void {
    this.fail(c, err);
  }

  /** Map a thrown error to a response: the error handler, else catalog status + problem body. */
  private fail(c: Context, err: unknown): void {
    const custom = this.errorHandler;
    if (custom === undefined || c.get(kHandlingError)) {
      this.answerError(c, err);
      return;
    }
    c.set(kHandlingError, true);
    // A hook that returns without answering (one that only reports the error)
    // leaves the default to be applied, so the request does not hang: the
    // problem body, or, if the failure came mid-response, the cut.
    const started = c.headSent;
    const unanswered = () => {
      if (started ? !c.answered : !c.headSent) this.answerError(c, err);
    };
    try {
      const result = custom(err, c);
      if (result instanceof Promise) result.then(unanswered, (again: unknown) => this.answerError(c, again));
      else unanswered();
    } catch (again) {
      this.answerError(c, again);
    }
  }

  private answerError(c: Context, err: unknown): void {
    const hyp = err instanceof HypError ? err : undefined;
    const status = hyp ? hyp.status : 500;
    if (status >= 500) c.log.error({ err }, hyp ? hyp.message : 'unhandled error in request handler');
    else if (this.log.isLevelEnabled('debug')) c.log.debug({ code: hyp?.code }, hyp?.message);
    if (c.span) c.span.recordException(err instanceof Error ? err : String(err));
    const res = c.res;
    if (res.headersSent) {
      // Too late for a problem body: cut the response so the client sees it failed.
      // HTTP/2: with an error code; a plain destroy() resets with NO_ERROR,
      // which a client reads as the end of a complete (but cut) body.
      if (res.writableEnded) return;
      if (c.request.httpVersionMajor === 2) (res as Http2ServerResponse).stream.close(NGHTTP2_INTERNAL_ERROR);
      else res.destroy();
      return;
    }
    for (const name of res.getHeaderNames())
      if (!keptOnError.has(name) && !name.startsWith(corsHeader)) res.removeHeader(name);
    // Unread body bytes would be parsed as the next request: close the connection instead.
    if (hyp?.code === 'HYP_E_BODY_TOO_LARGE' && c.request.httpVersionMajor === 1)
      res.setHeader('connection', 'close');
    c.json(hyp ? hyp.toProblem() : internalProblem, status);
  }

  /**
   * @internal Response closed: metrics, span, mount URL restore, `c.closed()`
   * waiters. `late`: closed after the handler returned, perhaps by a client
   * that left before any answer; that is counted as 499 (nginx's "client
   * closed request"), and its span gets no response status.
   */
  finish(c: Context, late = false): void {
    this.metrics.inFlight--;
    const status = late && !c.headSent ? clientClosedRequest : c.statusCode;
    const route = c.matched;
    // Unmatched routes (404/405/OPTIONS, method '*') see any method a client sends.
    const same = c.method === route.method;
    const method = same ? c.method : methodLabel(c.method);
    const key = same ? status : `${method} ${status}`;
    let series: HttpSeries | undefined = route.series.get(key);
    if (series === undefined) {
      series = this.metrics.series(method, route.pattern, status);
      route.series.set(key, series);
    }
    series.record((performance.now() - c.startedAt) / 1000);
    if (c.span) this.tracing.end(c.span, status === clientClosedRequest ? undefined : status, !c.answered);
    c.onClose();
  }
}

const kHandlingError = 'hyp.handling-error';
/** The status label of a request the client left before any answer went out (nginx's 499). */
const clientClosedRequest = 499;

/** 'close' of a response (or HTTP/2 stream) answered after its handler returned. */
function onResponseClose(this: TaggedResponse | TaggedStream): void {
  const c = this[kContext];
  if (c === undefined) return;
  this[kContext] = undefined;
  c.app.finish(c, true);
}

/** A request line on the HTTP/1.1 engine that is not HTTP/1.x: 505, connection closed, no route run. */
function refuseHttpVersion(req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify(new HypError('HYP_E_HTTP_VERSION', { version: req.httpVersion }).toProblem());
  res.writeHead(505, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
}

/**
 * An upgrade answered here: Node took its 'error' listener off the socket
 * with the 'upgrade' event, so one is put back (a reset peer would otherwise
 * throw ECONNRESET from the socket, an uncaught exception), and the socket is
 * destroyed once the answer is out.
 */

const badUrlProblem = new HypError('HYP_E_BAD_REQUEST', {
  detail: 'malformed percent-encoding in path',
}).toProblem();

const asteriskProblem = new HypError('HYP_E_BAD_REQUEST', {
  detail: 'the asterisk-form request target (*) is only for OPTIONS',
}).toProblem();

function badUrl(c: Context): void {
  c.json(badUrlProblem, 400);
}

// The defaults answer rather than throw, so middleware wrapping a 404 or 405 completes normally.
// They build the problem body without an Error: a 404 flood should not pay for stack traces.
function defaultNotFound(c: Context): void {
  c.json(problem('HYP_E_NOT_FOUND', c), 404);
}

function defaultMethodNotAllowed(c: Context): void {
  c.json(problem('HYP_E_METHOD_NOT_ALLOWED', c), 405);
}

/** `HypError(code, { method, path }).toProblem()` for the two `{method} … {path}` templates. */
function problem(code: ErrorCode & ('HYP_E_NOT_FOUND' | 'HYP_E_METHOD_NOT_ALLOWED'), c: Context) {
  const message = catalog[code].message.replace('{method}', () => c.method).replace('{path}', () => c.path);
  return { error: { code, message } };
}

function checkHandler(what: string, handler: Handler): Handler {
  if (typeof handler !== 'function') throw new TypeError(`${what}(handler): handler must be a function`);
  return handler;
}
