/**
 * The application object handed to `defineApp(app => ...)`: routes,
 * middleware, static files, mounted Node handlers, TCP services and the
 * WebSocket hub all register here. The worker runtime turns it into servers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../../supervisor/config/schema.js';
import type { Logger } from '../../supervisor/log.js';
import { Context } from './context.js';

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

export type Handler = (c: Context) => unknown;

type ShutdownHook = () => void | Promise<void>;

/**
 * Minimal route table (exact method + path). The router issue replaces the
 * internals with find-my-way; the public surface stays.
 */
export class App {
  private readonly routes = new Map<string, Handler>();
  private readonly shutdownHooks: ShutdownHook[] = [];

  get(path: string, handler: Handler): this {
    return this.on('GET', path, handler);
  }
  post(path: string, handler: Handler): this {
    return this.on('POST', path, handler);
  }
  on(method: string, path: string, handler: Handler): this {
    this.routes.set(`${method} ${path}`, handler);
    return this;
  }

  /** Run at drain, after servers stop accepting. */
  onShutdown(hook: ShutdownHook): this {
    this.shutdownHooks.push(hook);
    return this;
  }

  async shutdown(): Promise<void> {
    for (const hook of this.shutdownHooks) await hook();
  }

  /** The Node request listener the HTTP servers call. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const handler = this.routes.get(`${method} ${url.pathname}`);
    const c = new Context(req, res, url);
    if (!handler) {
      c.status(404).json({ error: { code: 'HYP_E_NOT_FOUND', message: `no route for ${req.method} ${url.pathname}` } });
      return;
    }
    Promise.resolve()
      .then(() => handler(c))
      .catch(() => {
        if (!res.headersSent) c.status(500).json({ error: { code: 'HYP_E_INTERNAL', message: 'internal server error' } });
        else res.destroy();
      });
  };
}
