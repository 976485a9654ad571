/**
 * The admin server's 'clientError' listener: a request Node's parser refused
 * (HPE_*) or that did not arrive within the admin timeouts gets the status
 * Node would send, with a JSON body naming a stable code, like every other
 * admin error. Node's own answer has an empty body. Mirrors the worker's
 * apps/server/http/client-error.ts; the supervisor does not import from apps/.
 */
import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from './errors.js';
import type { Logger } from './log.js';

export interface AdminClientErrorOptions {
  /** The server's `maxHeaderSize` in bytes, for the 431 message. */
  maxHeaderSize: number;
  /** `headersTimeout` and `requestTimeout` in ms, for the 408 message. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  log: Logger;
}

/** How long an answered connection may stay half-closed before it is destroyed. */
const lingerMs = 1000;

/** Build the listener (`server.on('clientError', adminClientErrorListener(...))`). */
export function adminClientErrorListener(
  opts: AdminClientErrorOptions,
): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    // A reset or any other error beneath HTTP: the connection is dead, an
    // answer would never finish writing.
    if (!isHttpClientError(err) || !socket.writable) {
      socket.destroy();
      return;
    }
    // The error is in a request pipelined behind one still being answered: an
    // answer now would land inside that response, or be taken for it.
    const answering = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (answering && (answering.headersSent || answering.req.complete)) {
      socket.destroy();
      return;
    }
    const { status, code, message } = describe(err, opts);
    opts.log.debug({ code, parser: err.code, remote: socket.remoteAddress, status }, `admin: ${message}`);
    const body = `${JSON.stringify({ error: { code, message } })}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    // end() waits for the peer's FIN; a peer that never reads never sends
    // one and would hold the descriptor. Destroy after a grace that lets a
    // reading peer take the answer (an immediate destroy can reset it away).
    const linger = setTimeout(() => socket.destroy(), lingerMs);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  };
}

/** Node's HTTP/1.1 parser errors (HPE_*) and its request timeout: what Node answers 400/408/413/431. */
function isHttpClientError(err: NodeJS.ErrnoException): boolean {
  return err.code !== undefined && (err.code.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT');
}

function describe(
  err: NodeJS.ErrnoException,
  opts: AdminClientErrorOptions,
): { status: number; code: ErrorCode; message: string } {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return {
      status: 408,
      code: 'HYP_E_REQUEST_TIMEOUT',
      message: `request headers did not arrive within ${opts.headersTimeoutMs} ms, or the request within ${opts.requestTimeoutMs} ms`,
    };
  // The catalog's 431 message names server.limits.max_header_size, a limit of
  // the application ports; the admin server has its own.
  if (err.code === 'HPE_HEADER_OVERFLOW')
    return {
      status: 431,
      code: 'HYP_E_HEADERS_TOO_LARGE',
      message: `request line and headers exceed ${opts.maxHeaderSize} bytes (admin server)`,
    };
  // llhttp's reason is a fixed English phrase per error ("Invalid header value char").
  const reason = (err as { reason?: unknown }).reason;
  const what = typeof reason === 'string' && reason !== '' ? reason : 'Parse error';
  // Node answers 413 to chunk extensions over its 16 KiB bound.
  const status = err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413 : 400;
  return { status, code: 'HYP_E_BAD_REQUEST', message: `malformed request: ${what} (${err.code})` };
}
