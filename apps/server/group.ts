/**
 * Route groups: a path prefix plus middleware that apply to the routes
 * registered through the group (and its sub-groups). The App is the root
 * group; its `use()` middleware is global and also wraps 404 and 405.
 */
import { type MountOptions, mountHandler, type NodeHandler } from './mount.js';
import { type Handler, type Middleware, Route, type Router } from './router.js';
import { type StaticOptions, serveStatic } from './static.js';

/** Route arguments: optional route-level middleware, then the handler. */
export type RouteHandlers = [...Middleware[], Handler];

/** Methods `all()` and `mount()` register. */
export const allMethods = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT'] as const;

export class RouteGroup {
  /** Middleware added with `use()`. */
  protected readonly middleware: Middleware[] = [];

  constructor(
    protected readonly router: Router,
    /** Normalised prefix: `''` or `/a/b` (no trailing slash). */
    readonly prefix: string,
    private readonly parent?: RouteGroup,
  ) {}

  /** Add middleware to this group (on the App: global middleware). */
  use(...middleware: Middleware[]): this {
    for (const mw of middleware) {
      if (typeof mw !== 'function') throw new TypeError('use(middleware): middleware must be a function');
      this.middleware.push(mw);
    }
    this.router.stale = true;
    return this;
  }

  get(path: string, ...handlers: RouteHandlers): this {
    return this.on('GET', path, ...handlers);
  }
  post(path: string, ...handlers: RouteHandlers): this {
    return this.on('POST', path, ...handlers);
  }
  put(path: string, ...handlers: RouteHandlers): this {
    return this.on('PUT', path, ...handlers);
  }
  patch(path: string, ...handlers: RouteHandlers): this {
    return this.on('PATCH', path, ...handlers);
  }
  delete(path: string, ...handlers: RouteHandlers): this {
    return this.on('DELETE', path, ...handlers);
  }
  head(path: string, ...handlers: RouteHandlers): this {
    return this.on('HEAD', path, ...handlers);
  }
  options(path: string, ...handlers: RouteHandlers): this {
    return this.on('OPTIONS', path, ...handlers);
  }
  /** Every common method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS). */
  all(path: string, ...handlers: RouteHandlers): this {
    return this.on(allMethods, path, ...handlers);
  }

  /** `on('GET', '/users/:id', handler)`; `on(['GET', 'POST'], ...)`. */
  on(method: string | readonly string[], path: string, ...handlers: RouteHandlers): this {
    return this.add(method, this.join(path), handlers);
  }

  /** `on()` for a pattern that already carries this group's prefix. */
  private add(method: string | readonly string[], pattern: string, handlers: RouteHandlers): this {
    const handler = handlers[handlers.length - 1] as Handler | undefined;
    if (typeof handler !== 'function')
      throw new TypeError(`route ${pattern}: the last argument must be a handler`);
    const routeMiddleware = handlers.slice(0, -1) as Middleware[];
    for (const mw of routeMiddleware) {
      if (typeof mw !== 'function') throw new TypeError(`route ${pattern}: middleware must be functions`);
    }
    const chain = () => [...this.chain(), ...routeMiddleware];
    for (const m of typeof method === 'string' ? [method] : method) {
      this.router.add(new Route(m.toUpperCase(), pattern, handler, chain));
    }
    return this;
  }

  /** A sub-group: `app.group('/api', auth).get('/me', ...)` serves `/api/me` behind `auth`. */
  group(prefix: string, ...middleware: Middleware[]): RouteGroup {
    const group = new RouteGroup(this.router, this.join(prefix).replace(/\/$/, ''), this);
    group.use(...middleware);
    return group;
  }

  /** Serve the files under `dir` at `prefix` (GET and HEAD). */
  static(prefix: string, dir: string, options: StaticOptions = {}): this {
    const base = this.join(prefix).replace(/\/$/, '');
    const handler = serveStatic(dir, base, options);
    // `base` already carries this group's prefix: `add`, not `on`, which would prefix it again.
    for (const method of ['GET', 'HEAD']) {
      this.add(method, base || '/', [handler]);
      this.add(method, `${base}/*`, [handler]);
    }
    return this;
  }

  /**
   * Hand every request under `prefix` to a Node `(req, res)` handler (an
   * Express app, `fastify.routing`, Hono's node adapter) with the prefix
   * stripped from `req.url`. HTTP/2 requests are refused with
   * `HTTP_1_1_REQUIRED` unless `{ http2: true }` says the handler takes
   * Node's compat objects (Fastify and Hono do, Express does not).
   */
  mount(prefix: string, handler: NodeHandler, options: MountOptions = {}): this {
    if (typeof handler !== 'function')
      throw new TypeError(`mount(${prefix}): handler must be a (req, res) function`);
    const base = this.join(prefix).replace(/\/$/, '');
    const run = mountHandler(base, handler, options);
    this.add(allMethods, base || '/', [run]);
    this.add(allMethods, `${base}/*`, [run]);
    return this;
  }

  /** Middleware of this group and its parents, the root's (global) excluded. */
  protected chain(): Middleware[] {
    if (!this.parent) return [];
    const inherited = this.parent.chain();
    return inherited.length === 0 ? this.middleware : [...inherited, ...this.middleware];
  }

  private join(path: string): string {
    if (typeof path !== 'string' || (path !== '' && !path.startsWith('/') && path !== '*')) {
      throw new TypeError(`route path ${String(path)} must start with /`);
    }
    if (path === '' || path === '/') return this.prefix || '/';
    return this.prefix + (path === '*' ? '/*' : path);
  }
}
