/**
 * Server-sent events (`text/event-stream`) on one response: `c.sse()`
 * returns a writer; each `send` is one event. Multi-line data becomes one
 * `data:` line per line, as the format requires.
 */
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';

export interface SseEvent {
  /** `event:` field (single line). */
  event?: string;
  /** `id:` field (single line, no NUL); clients send it back as `Last-Event-ID`. */
  id?: string;
  /** `retry:` reconnection delay in ms. */
  retry?: number;
}

export class SseStream {
  constructor(
    private readonly res: ServerResponse | Http2ServerResponse,
    /** Aborted when the client goes away. */
    readonly signal: AbortSignal,
  ) {}

  get closed(): boolean {
    return this.res.writableEnded || this.signal.aborted;
  }

  /** Send one event; objects are JSON-encoded. Returns false when the socket buffer is full. */
  send(data: unknown, fields: SseEvent = {}): boolean {
    let frame = '';
    if (fields.event !== undefined) frame += `event: ${singleLine('event', fields.event)}\n`;
    if (fields.id !== undefined) frame += `id: ${singleLine('id', fields.id)}\n`;
    if (fields.retry !== undefined) {
      if (!Number.isInteger(fields.retry) || fields.retry < 0)
        throw new TypeError('sse retry must be a non-negative integer');
      frame += `retry: ${fields.retry}\n`;
    }
    const text = typeof data === 'string' ? data : (JSON.stringify(data) ?? 'null');
    for (const line of text.split(/\r\n|\r|\n/)) frame += `data: ${line}\n`;
    return this.write(`${frame}\n`);
  }

  /** A comment line: keeps proxies from timing the stream out. */
  comment(text = ''): boolean {
    return this.write(`: ${singleLine('comment', text)}\n\n`);
  }

  close(): void {
    if (!this.res.writableEnded) this.res.end();
  }

  private write(chunk: string): boolean {
    if (this.closed) return false;
    return (this.res as ServerResponse).write(chunk);
  }
}

function singleLine(field: string, value: string): string {
  if (/[\r\n\0]/.test(value)) throw new TypeError(`sse ${field} must be a single line without NUL`);
  return value;
}
