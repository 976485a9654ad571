/**
 * The route table: a thin wrapper over find-my-way's radix tree. It stores
 * one `Route` per method and pattern, answers "which route serves this
 * request" and, on a miss, "which methods would have matched" (the `Allow`
 * header of a 405). Middleware chains are composed once, not per request.
 */
import FindMyWay from 'find-my-way';
import { HypError } from '../../supervisor/errors.js';
import type { Context } from './context.js';
import type { HttpSeries } from './telemetry/metrics.js';

/** A route handler: answers through the context (`c.text`, `c.json`, ...). */
export type Handler = (c: Context) => unknown;
/** Onion middleware: code before `await next()` runs inward, code after it outward. */
export type Middleware = (c: Context, next: Next) => unknown;
export type Next = () => Promise<void>;

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS' | (string & {});

/** Route label for requests no route matched (metrics, spans). */
export const unmatchedRoute = '(not found)';

export interface RouterPolicy {
  /** `/users/` matches `/users` (default true). */
  ignoreTrailingSlash?: boolean;
  /** `/Users` does not match `/users` (default true). */
  caseSensitive?: boolean;
}

/** A registered route, or a synthetic one for 404 / 405 / automatic OPTIONS. */
export class Route {
  /** The composed chain; set by `compile`. */
  run: Handler;
  /** Metric series per status (or `METHOD status` for HEAD served by GET), bound once. */
  readonly series = new Map<number | string, HttpSeries>();

  constructor(
    readonly method: string,
    /** The pattern, e.g. `/users/:id`; never the raw path. */
    readonly pattern: string,
    readonly handler: Handler,
    /** Middleware between the global chain and the handler (groups, route-level). */
    readonly middleware: () => readonly Middleware[],
  ) {
    this.run = handler;
  }

  compile(global: readonly Middleware[]): void {
    const own = this.middleware();
    this.run = compose(own.length === 0 ? global : [...global, ...own], this.handler);
  }
}

/** find-my-way's own result object, read as hyp stores it (no second allocation per request). */
export interface RouteMatch {
  readonly store: Route;
  readonly params: Readonly<Record<string, string | undefined>>;
  /** Raw query string (without `?`), parsed lazily by the context. */
  readonly searchParams: string;
}
/** The params of a route without any (no prototype: `c.param('constructor')` is undefined, as find-my-way's). */
export const noParams: Readonly<Record<string, string | undefined>> = Object.freeze(Object.create(null));
// find-my-way wants a handler; hyp keeps everything in the store.
const noop = (): void => {};
/**
 * The longest path parameter (decoded) a route matches: a JWT or an opaque
 * cursor fits; find-my-way's default, 100, turned such URLs into 404s. It
 * also bounds what a regex or multi-parameter segment (`:from-:to`) is run on.
 */
export const maxParamLength = 1024;
// What find-my-way's store-less results answer, told apart by calling their handler.
const badUrlMark = Symbol('bad url');
const tooLongMark = Symbol('parameter too long');
const tooLongProblem = new HypError('HYP_E_URI_TOO_LONG', { limit: maxParamLength }).toProblem();
// Keep the query string raw: the context parses it only if asked.
const rawQuery = (query: string) => query as unknown as Record<string, string>;

/**
 * Patterns the static fast path may serve: no parameter or wildcard, and
 * only characters that need no decoding — for those an exact match on the
 * raw path is exactly what the radix tree would answer.
 */
const plainPattern = /^\/[A-Za-z0-9\-._~/]*$/;

export class Router {
  private readonly tree: FindMyWay.Instance<FindMyWay.HTTPVersion.V1>;
  /** method → exact path → route, for plain static patterns (skipped when matching ignores case). */
  private readonly statics: Map<string, Map<string, Route>> | undefined;
  private readonly routes: Route[] = [];
  private readonly methods = new Set<string>();
  /** Routes or middleware changed since the last `compile`. */
  stale = true;
  /** Answers a path whose parameter is longer than `maxParamLength` (and that no other route takes). */
  private readonly tooLong = new Route(
    '*',
    unmatchedRoute,
    (c) => c.json(tooLongProblem, 414),
    () => [],
  );

  private readonly ignoreTrailingSlash: boolean;

  constructor(
    policy: RouterPolicy = {},
    /** Answers URLs whose path cannot be percent-decoded. */
    private readonly badUrl?: Route,
  ) {
    this.ignoreTrailingSlash = policy.ignoreTrailingSlash ?? true;
    this.tree = FindMyWay({
      ignoreTrailingSlash: this.ignoreTrailingSlash,
      caseSensitive: policy.caseSensitive ?? true,
      querystringParser: rawQuery,
      maxParamLength,
      // find-my-way then returns a match whose store is null; see `failure`.
      onBadUrl: () => badUrlMark,
      onMaxParamLength: () => tooLongMark,
    });
    if (policy.caseSensitive ?? true) this.statics = new Map();
  }

  add(route: Route): void {
    const method = route.method.toUpperCase();
    if (!/^[A-Z][A-Z-]*$/.test(method))
      throw new TypeError(`route ${route.pattern}: invalid method ${route.method}`);
    if (percentEscape.test(route.pattern)) throw encodedPattern(route.pattern);
    this.register(method, route);
    if (this.statics && plainPattern.test(route.pattern) && !route.pattern.includes('//')) {
      const paths = this.statics.get(method) ?? new Map<string, Route>();
      this.statics.set(method, paths.set(route.pattern, route));
    }
    this.routes.push(route);
    this.methods.add(method);
    this.stale = true;
  }

  /**
   * Put `route` in the tree. A GET route also serves HEAD from the HEAD tree
   * (unless a HEAD route has its pattern), so HEAD is matched with the same
   * precedence as GET: a HEAD catch-all (`static('/')`, `mount('/')`,
   * `all('/*')`) must not take `/users/42` from `get('/users/:id')`.
   */
  private register(method: string, route: Route): void {
    try {
      this.tree.on(method as FindMyWay.HTTPMethod, route.pattern, noop, route);
    } catch (err) {
      // A HEAD route where a GET route put its implicit one: it takes its place.
      if (method !== 'HEAD' || !this.rebuild(route)) throw refused(method, route, err);
    }
    if (method === 'GET') this.implicitHead(route);
  }

  /** HEAD for a GET route, where no HEAD route has its pattern (that one is kept). */
  private implicitHead(route: Route): void {
    try {
      this.tree.on('HEAD', route.pattern, noop, route);
    } catch {
      // A HEAD route of the same pattern was registered first.
    }
  }

  /**
   * The tree again, from the registered routes plus `extra` (a HEAD route),
   * before the GET routes' implicit HEADs. False (and the tree as it was) if
   * `extra` still collides: with another HEAD route.
   */
  private rebuild(extra: Route): boolean {
    const tree = this.tree;
    tree.reset();
    for (const route of this.routes)
      tree.on(route.method.toUpperCase() as FindMyWay.HTTPMethod, route.pattern, noop, route);
    let added = true;
    try {
      tree.on('HEAD', extra.pattern, noop, extra);
    } catch {
      added = false;
    }
    for (const route of this.routes) if (route.method.toUpperCase() === 'GET') this.implicitHead(route);
    return added;
  }

  /** Build every route's middleware chain and compile the radix tree for lookups. */
  compile(global: readonly Middleware[]): void {
    for (const route of this.routes) route.compile(global);
    this.badUrl?.compile(global);
    this.tooLong.compile(global);
    this.tree.compile();
    this.stale = false;
  }

  /** The route for `method url`; HEAD without a HEAD route is served by the GET route. */
  find(method: string, url: string): RouteMatch | null {
    if (this.statics !== undefined) {
      // Most requests hit a static route by its exact path: one map lookup
      // instead of the tree's decode-and-walk. Anything else goes to the tree.
      const q = url.indexOf('?');
      const path = q < 0 ? url : url.slice(0, q);
      const route =
        this.statics.get(method)?.get(path) ??
        (method === 'HEAD' ? this.statics.get('GET')?.get(path) : undefined);
      if (route !== undefined)
        return { store: route, params: noParams, searchParams: q < 0 ? '' : url.slice(q + 1) };
    }
    const found = this.lookup(method, url);
    if (found === null) return null;
    if (found.store !== null) return emptyParam(found.params) ? null : (found as unknown as RouteMatch);
    const store = failure(found) === tooLongMark ? this.tooLong : this.badUrl;
    return store ? { store, params: noParams, searchParams: '' } : null;
  }

  /**
   * The tree's answer. With trailing slashes ignored, find-my-way strips the
   * slash of `/files/` before matching, so `/files/*` (an empty wildcard,
   * the folder itself) would never match it: on a miss, such a path is
   * tried once more as the wildcard's empty match.
   */
  private lookup(method: string, url: string): FindMyWay.FindResult<FindMyWay.HTTPVersion.V1> | null {
    const found = this.tree.find(method as FindMyWay.HTTPMethod, url);
    if (found !== null || !this.ignoreTrailingSlash) return found;
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path.length < 2 || path.charCodeAt(path.length - 1) !== 47 /* / */) return null;
    const again = this.tree.find(method as FindMyWay.HTTPMethod, `${path}/${q < 0 ? '' : url.slice(q)}`);
    return again !== null && again.store !== null && again.params['*'] === '' ? again : null;
  }

  /**
   * Methods that have a route for `url` (HEAD included wherever GET is),
   * sorted; `null` when its path cannot be percent-decoded (then no method has).
   */
  allowed(url: string): string[] | null {
    const allow: string[] = [];
    for (const method of this.methods) {
      const found = this.lookup(method, url);
      if (found === null) continue;
      if (found.store === null) {
        if (failure(found) === badUrlMark) return null;
        continue; // a parameter too long for this method's routes: not served
      }
      if (!emptyParam(found.params)) allow.push(method);
    }
    // Only OPTIONS routes (a CORS preflight catch-all): no resource here, a 404.
    if (allow.length === 1 && allow[0] === 'OPTIONS') return [];
    if (allow.includes('GET') && !allow.includes('HEAD')) allow.push('HEAD');
    return allow.sort();
  }

  /** Every method some route serves (HEAD wherever GET is, and OPTIONS), sorted: `Allow` of `OPTIONS *`. */
  served(): string[] {
    const all = new Set(this.methods);
    if (all.has('GET')) all.add('HEAD');
    all.add('OPTIONS');
    return [...all].sort();
  }

  /** The table as text, for `hyp routes`-style debugging. */
  print(): string {
    return this.tree.prettyPrint();
  }
}

/**
 * A named parameter matched an empty segment (`/users//`, `/a//b`, or
 * `/users/` with strict trailing slashes): not a match, as in Express and
 * Hono, so a handler never sees `c.param('id') === ''`. A wildcard may be
 * empty (`/files/` is the directory itself).
 */
function emptyParam(params: Record<string, string | undefined>): boolean {
  for (const name in params) if (params[name] === '' && name !== '*') return true;
  return false;
}

/** Which of find-my-way's store-less results this is: a bad URL or a parameter too long. */
function failure(found: FindMyWay.FindResult<FindMyWay.HTTPVersion.V1>): symbol {
  return (found.handler as unknown as () => symbol)();
}

const percentEscape = /%[0-9A-Fa-f]{2}/;

/**
 * Request paths are matched percent-decoded, so a pattern holding an escape
 * (`/a%20b`, often a prefix copied from a URL) would never match.
 */
function encodedPattern(pattern: string): TypeError {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pattern);
  } catch {
    decoded = pattern;
  }
  const hint =
    decoded.includes('?') || decoded.includes('#') || decoded.split('/').length !== pattern.split('/').length
      ? 'an encoded "/", "?" or "#" cannot be part of a route'
      : `write the characters themselves: ${decoded}`;
  return new TypeError(
    `route ${pattern} would never match: request paths are matched after percent-decoding; ${hint}`,
  );
}

function refused(method: string, route: Route, err: unknown): TypeError {
  return new TypeError(`cannot add route ${method} ${route.pattern}: ${(err as Error).message}`, {
    cause: err,
  });
}

/**
 * Compose middleware around a handler once, at start-up. Each layer gets a
 * `next` that runs the rest of the chain and always returns a promise; a
 * route without middleware runs its handler directly.
 */
export function compose(middleware: readonly Middleware[], handler: Handler): Handler {
  let inner: Handler = handler;
  for (let i = middleware.length - 1; i >= 0; i--) inner = layer(middleware[i]!, inner);
  return inner;
}

function layer(mw: Middleware, inner: Handler): Handler {
  return (c) => {
    let called = false;
    let result: unknown;
    // The rest of the chain failed. A middleware that awaited next() sees the
    // rejection and, rethrowing, hands it outward. One that did not wait (the
    // Express habit: `next(); return`) or swallowed it without answering would
    // leave the request hanging, and an unobserved rejection takes the worker
    // down: once this middleware is done, an unanswered request gets the
    // error answered as if thrown. One thrown after the answer is handled as
    // if thrown too (onError, else logged with the request id), as it would
    // be without this middleware; also when the middleware caught it and
    // reported it itself, which cannot be told from not waiting.
    const downstreamFailed = (err: unknown) => {
      const afterAnswer = c.answered;
      const unanswered = () => {
        if (afterAnswer || !c.answered) c.app.strayError(c, err);
      };
      if (result instanceof Promise) result.then(unanswered, ignore);
      else queueMicrotask(unanswered);
    };
    result = mw(c, () => {
      if (called) return Promise.reject(new Error('next() called more than once'));
      called = true;
      let downstream: Promise<void>;
      try {
        downstream = Promise.resolve(inner(c)).then(ignore);
      } catch (err) {
        downstream = Promise.reject(err);
      }
      downstream.then(undefined, downstreamFailed);
      return downstream;
    });
    return result;
  };
}

function ignore(): void {}
