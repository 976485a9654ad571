/**
 * The 'clientError' listener of hyp's HTTP/1.1 servers (the worker's HTTP
 * listener and the supervisor's admin server): a request Node's parser
 * refused (HPE_*) or that did not arrive in time gets the status Node would
 * send (400, 408, 413 for chunk extensions over 16 KiB, 431), with a JSON
 * body naming a stable code and a debug log line. Node's own answer has an
 * empty body and no log.
 */
import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { type ErrorCode, HypError } from './errors.js';
import type { Logger } from './log.js';

export interface ClientErrorOptions {
  /** The server's `maxHeaderSize` in bytes, and the setting that sets it, for the 431 message. */
  maxHeaderSize: number;
  maxHeaderSetting: string;
  /** The 408 message: what had to arrive by when. */
  timeoutMessage: string;
  log?: Logger | undefined;
  /** Put before the log line's message (`admin: `). */
  logPrefix?: string;
  /**
   * Destroy the socket this long after the answer. `end()` waits for the
   * peer's FIN, and a peer that never reads never sends one: without a
   * linger (or another timer of the server's own) it holds the descriptor.
   */
  lingerMs?: number;
  /**
   * Called once per request refused for what the client sent (or did not
   * send in time), with the code of the refusal — also when the refusal is
   * a close (an error pipelined behind an answer). Not called for a
   * connection that died underneath (a reset, a TLS alert from the peer).
   */
  onRefused?: ((code: ErrorCode) => void) | undefined;
}

/** Build the listener (`server.on('clientError', clientErrorListener(...))`). */
export function clientErrorListener(
  opts: ClientErrorOptions,
): (err: NodeJS.ErrnoException, socket: Socket) => void {
  const onRefused = opts.onRefused;
  return (err, socket) => {
    // Only an error in what the client sent over HTTP gets an HTTP answer. Any
    // other (a reset, a TLS alert from the peer: the connection is dead
    // underneath) ends the socket at once: an answer to it never finishes
    // writing, and the socket stayed open until the headers timeout, holding
    // a drain for up to drain.timeout.
    if (!isHttpClientError(err) || !socket.writable) {
      socket.destroy();
      return;
    }
    const { status, code, message } = describe(err, opts);
    onRefused?.(code);
    // The error is in a request pipelined behind one still being answered: an
    // answer now would land inside that response's body, or be taken for it.
    const answering = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (answering && (answering.headersSent || answering.req.complete)) {
      socket.destroy();
      return;
    }
    opts.log?.debug(
      { code, parser: err.code, remote: socket.remoteAddress, status },
      `${opts.logPrefix ?? ''}${message}`,
    );
    const body = JSON.stringify({ error: { code, message } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    if (opts.lingerMs !== undefined) {
      // A grace that lets a reading peer take the answer (an immediate destroy can reset it away).
      const linger = setTimeout(() => socket.destroy(), opts.lingerMs);
      linger.unref();
      socket.once('close', () => clearTimeout(linger));
    }
  };
}

/** Node's HTTP/1.1 parser errors (HPE_*) and its request timeout: what Node answers 400/408/413/431. */
function isHttpClientError(err: NodeJS.ErrnoException): boolean {
  return err.code !== undefined && (err.code.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT');
}

function describe(
  err: NodeJS.ErrnoException,
  opts: ClientErrorOptions,
): { status: number; code: ErrorCode; message: string } {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return { status: 408, code: 'HYP_E_REQUEST_TIMEOUT', message: opts.timeoutMessage };
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    const e = new HypError('HYP_E_HEADERS_TOO_LARGE', {
      limit: opts.maxHeaderSize,
      setting: opts.maxHeaderSetting,
    });
    return { status: e.status, code: e.code, message: e.message };
  }
  if (err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') {
    // Node answers 413 to chunk extensions over llhttp's bound (16 KiB, not configurable).
    const e = new HypError('HYP_E_CHUNK_EXTENSIONS_TOO_LARGE', { limit: 16384, parser: err.code });
    return { status: e.status, code: e.code, message: e.message };
  }
  // llhttp's reason is a fixed English phrase per error ("Invalid header value char").
  const reason = (err as { reason?: unknown }).reason;
  const what = typeof reason === 'string' && reason !== '' ? reason : 'Parse error';
  return { status: 400, code: 'HYP_E_BAD_REQUEST', message: `malformed request: ${what} (${err.code})` };
}
