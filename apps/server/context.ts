/**
 * Per-request context (minimal; the HTTP issue grows it HypGo-style).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export class Context {
  private statusCode = 200;
  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly url: URL,
  ) {}

  status(code: number): this {
    this.statusCode = code;
    return this;
  }

  query(name: string): string | undefined {
    return this.url.searchParams.get(name) ?? undefined;
  }

  text(body: string): void {
    this.send('text/plain; charset=utf-8', body);
  }

  json(body: unknown): void {
    this.send('application/json; charset=utf-8', JSON.stringify(body));
  }

  private send(type: string, body: string): void {
    const res = this.res;
    res.statusCode = this.statusCode;
    res.setHeader('content-type', type);
    res.setHeader('content-length', Buffer.byteLength(body));
    res.end(this.req.method === 'HEAD' ? undefined : body);
  }
}
