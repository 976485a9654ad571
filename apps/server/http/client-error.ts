/**
 * The HTTP/1.1 server's 'clientError' listener: a request Node's parser
 * refused (HPE_*) or timed out gets the status Node would send, with a JSON
 * body naming a stable code and what was wrong, and a debug log line.
 * Node's own answer has an empty body and no log.
 */
import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { type ErrorCode, HypError } from '../../../supervisor/errors.js';
import type { Logger } from '../../../supervisor/log.js';

export interface ClientErrorOptions {
  /** `server.limits.max_header_size` in bytes, for the 431 message. */
  maxHeaderSize: number;
  log?: Logger | undefined;
}

/** Build the listener (`server.on('clientError', clientErrorListener(...))`). */
export function clientErrorListener(
  opts: ClientErrorOptions,
): (err: NodeJS.ErrnoException, socket: Socket) => void {
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
    // The error is in a request pipelined behind one still being answered: an
    // answer now would land inside that response's body, or be taken for it.
    const answering = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (answering && (answering.headersSent || answering.req.complete)) {
      socket.destroy();
      return;
    }
    const { status, code, message } = describe(err, opts.maxHeaderSize);
    opts.log?.debug({ code, parser: err.code, remote: socket.remoteAddress, status }, message);
    const body = JSON.stringify({ error: { code, message } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  };
}

/** Node's HTTP/1.1 parser errors (HPE_*) and its request timeout: what a 400/408/413/431 answers. */
export function isHttpClientError(err: NodeJS.ErrnoException): boolean {
  return err.code !== undefined && (err.code.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT');
}

interface Described {
  status: number;
  code: ErrorCode;
  message: string;
}

function describe(err: NodeJS.ErrnoException, maxHeaderSize: number): Described {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return {
      status: 408,
      code: 'HYP_E_REQUEST_TIMEOUT',
      message: 'request headers or body did not arrive in time',
    };
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    const e = new HypError('HYP_E_HEADERS_TOO_LARGE', { limit: maxHeaderSize });
    return { status: e.status, code: e.code, message: e.message };
  }
  // llhttp's reason is a fixed English phrase per error ("Invalid header value char").
  const reason = (err as { reason?: unknown }).reason;
  const what = typeof reason === 'string' && reason !== '' ? reason : 'Parse error';
  // Node answers 413 to chunk extensions over its 16 KiB bound.
  const status = err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413 : 400;
  return { status, code: 'HYP_E_BAD_REQUEST', message: `malformed request: ${what} (${err.code})` };
}
