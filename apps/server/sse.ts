/**
 * Server-sent events (`text/event-stream`) on one response: `c.sse()`
 * returns a writer; each `send` is one event. Multi-line data becomes one
 * `data:` line per line, as the format requires.
 *
 * The writer bounds what it holds for a client that does not read: once
 * more than `bufferLimit` bytes wait to be sent, the stream is cut (the
 * client's EventSource reconnects, with `Last-Event-ID`) rather than let a
 * stalled client grow the worker's memory without end.
 *
 * When the worker drains, every open stream is closed with a `retry:` hint
 * spread over `drain.websocket_spread` (App.drainEventStreams), so clients
 * reconnect elsewhere, spread out, instead of holding the drain.
 */
import type { ServerResponse } from 'node:http';
import { constants, Http2ServerResponse } from 'node:http2';

export interface SseEvent {
  /** `event:` field (single line). */
  event?: string;
  /** `id:` field (single line, no NUL); clients send it back as `Last-Event-ID`. */
  id?: string;
  /** `retry:` reconnection delay in ms. */
  retry?: number;
}

export interface SseOptions {
  /**
   * Bytes a client may leave unread (queued in the worker) before its stream
   * is cut. Default 1 MiB, as `websocket.send_buffer_limit`.
   */
  bufferLimit?: number;
}

/** Default of `SseOptions.bufferLimit`. */
export const sseBufferLimit = 1024 * 1024;

export class SseStream {
  private readonly ended = new AbortController();
  private readonly limit: number;

  /** @internal Built by `c.sse()`. */
  constructor(
    private readonly res: ServerResponse | Http2ServerResponse,
    /** `c.signal`: aborted when the client goes away. */
    clientGone: AbortSignal,
    options: SseOptions,
    /** Called once when a client that does not read made the stream exceed `bufferLimit`. */
    private readonly onOverflow: (buffered: number, limit: number) => void,
  ) {
    const limit = options.bufferLimit ?? sseBufferLimit;
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new TypeError(`sse bufferLimit must be a positive integer, got ${limit}`);
    this.limit = limit;
    const end = () => this.ended.abort();
    if (clientGone.aborted) end();
    else clientGone.addEventListener('abort', end, { once: true });
    res.once('close', end);
    res.once('finish', end);
  }

  /**
   * Aborted when the stream is over for any reason: the client went away,
   * `close()`, a HEAD request (answered with the head alone), or a client
   * that stopped reading. Stop producing events then.
   */
  get signal(): AbortSignal {
    return this.ended.signal;
  }

  get closed(): boolean {
    return this.ended.signal.aborted || this.res.writableEnded;
  }

  /**
   * Send one event; objects are JSON-encoded. Returns false when the event
   * was not queued (the stream is closed) or the socket buffer is full.
   */
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
    this.ended.abort();
  }

  /**
   * @internal The worker drains: tell the client to reconnect in `retryMs`
   * (the `retry:` field, with no data, dispatches no event) and close. Its
   * EventSource then reconnects to a worker or pod that is not draining,
   * with `Last-Event-ID`, instead of holding the drain to its deadline.
   */
  drain(retryMs: number): void {
    if (this.closed) return;
    (this.res as ServerResponse).write(`retry: ${Math.max(0, Math.round(retryMs))}\n\n`);
    this.close();
  }

  private write(chunk: string): boolean {
    if (this.closed) return false;
    const res = this.res;
    const buffered = res.writableLength;
    if (buffered > this.limit) {
      this.cut(buffered);
      return false;
    }
    return (res as ServerResponse).write(chunk);
  }

  /** A client that does not read: drop what it left unread, and its stream. */
  private cut(buffered: number): void {
    this.ended.abort();
    this.onOverflow(buffered, this.limit);
    const res = this.res;
    if (res instanceof Http2ServerResponse) res.stream.close(constants.NGHTTP2_CANCEL);
    else res.destroy();
  }
}

function singleLine(field: string, value: string): string {
  if (/[\r\n\0]/.test(value)) throw new TypeError(`sse ${field} must be a single line without NUL`);
  return value;
}
