/**
 * What a failed WebSocket handshake tells the client: the `connect_error`
 * event. A browser shows a script nothing (not even the status); the `ws`
 * package on Node hands over the server's answer ('unexpected-response'),
 * from which the status and the hub's refusal — `{"error": {"code",
 * "message"}}`, as the hub answers a refused upgrade — are read. No Node
 * import here: the browser bundle carries this file too.
 */
import type { ErrorCode } from '../../supervisor/errors.js';

/** A connection attempt that failed before opening. */
export interface ConnectErrorEvent {
  /** The HTTP status the server answered the upgrade with (Node with `ws` only: browsers do not show it). */
  status?: number;
  /** The hub's error code, from its answer's body (e.g. HYP_E_WS_FORBIDDEN from `authorize`). */
  code?: ErrorCode;
  /**
   * The hub's message, else what is known: the HTTP status line, the
   * network error (`connect ECONNREFUSED …`), or, where the socket says
   * nothing (browsers), 'handshake failed'.
   */
  message: string;
}

/** The part of Node's IncomingMessage that is read. */
interface Response {
  statusCode?: number;
  statusMessage?: string;
  headers: Record<string, string | string[] | undefined>;
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'end' | 'error' | 'aborted' | 'close', listener: () => void): unknown;
}

/** The `ws` WebSocket's surface used here (an EventEmitter; browsers' sockets have no `on`). */
interface NodeSocket {
  on(event: 'unexpected-response', listener: (req: unknown, res: Response) => void): unknown;
  terminate(): void;
}

/** Bytes of a refusal's body read for its code and message; a longer one is not parsed. */
const maxBodyBytes = 4096;
/** How long the body may take to arrive before the attempt ends without it. */
const bodyTimeoutMs = 2000;

export const unknownFailure = 'handshake failed';

/**
 * Watches `socket`'s handshake, where the socket shows it (`ws`): on a
 * non-101 answer, reads the status and a bounded body, calls `refused` with
 * what it found, then ends the attempt (`terminate`: the socket closes with
 * 1006, as without this).
 */
export function watchHandshake(socket: unknown, refused: (failure: ConnectErrorEvent) => void): void {
  const s = socket as Partial<NodeSocket>;
  if (typeof s.on !== 'function' || typeof s.terminate !== 'function') return;
  const node = s as NodeSocket;
  node.on('unexpected-response', (_req, res) => {
    const chunks: Uint8Array[] = [];
    let length = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      refused(failureOf(res, length <= maxBodyBytes ? chunks : []));
      node.terminate();
    };
    const timer = setTimeout(finish, bodyTimeoutMs);
    res.on('data', (chunk) => {
      length += chunk.length;
      if (length <= maxBodyBytes) chunks.push(chunk);
      else finish();
    });
    res.on('end', finish);
    res.on('error', finish);
    res.on('aborted', finish);
    res.on('close', finish);
  });
}

function failureOf(res: Response, body: Uint8Array[]): ConnectErrorEvent {
  const status = res.statusCode;
  const line = `unexpected server response: ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`;
  const failure: ConnectErrorEvent = status === undefined ? { message: line } : { status, message: line };
  const type = res.headers['content-type'];
  if (body.length === 0 || typeof type !== 'string' || !/^application\/json\b/i.test(type)) return failure;
  let parsed: unknown;
  try {
    const bytes = new Uint8Array(body.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of body) {
      bytes.set(c, at);
      at += c.length;
    }
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return failure;
  }
  const error = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (typeof error !== 'object' || error === null) return failure;
  if (typeof error.code === 'string' && /^HYP_E_[A-Z0-9_]+$/.test(error.code))
    failure.code = error.code as ErrorCode;
  if (typeof error.message === 'string' && error.message) failure.message = error.message;
  return failure;
}

/** The message of an `error` event before opening: `ws` names the network error, a browser nothing. */
export function errorMessage(event: unknown): string | undefined {
  const e = event as { message?: unknown; error?: { message?: unknown } } | null;
  const message = typeof e?.message === 'string' && e.message ? e.message : e?.error?.message;
  return typeof message === 'string' && message ? message : undefined;
}
