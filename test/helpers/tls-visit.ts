/** One exchange on a fresh TLS connection that offers `session`, for session-resumption tests. */
import { connect, type SecureVersion } from 'node:tls';

export interface TlsVisit {
  /** The server resumed the offered session. */
  reused: boolean;
  /** The session to offer next time (the last one the server sent). */
  session: Buffer | undefined;
  /** Everything the server answered. */
  body: string;
}

export interface TlsVisitOptions {
  /** Sent once the handshake is done instead of an HTTP/1.1 GET of `path` (a raw TCP service). */
  send?: string;
  /** The client ends the connection once the answer reads so (else it waits for the server to close). */
  until?: string;
  maxVersion?: SecureVersion;
  /** OpenSSL options of the client (`constants.SSL_OP_NO_TICKET`: a client without tickets). */
  secureOptions?: number;
}

/** An HTTP/1.1 GET of `path` (or `options.send`); rejects after 10 s without the connection closing. */
export function tlsVisit(
  port: number,
  ca: Buffer,
  session: Buffer | undefined,
  path: string,
  options: TlsVisitOptions = {},
): Promise<TlsVisit> {
  return new Promise((resolve, reject) => {
    let latest: Buffer | undefined;
    let reused = false;
    let body = '';
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca,
      session,
      maxVersion: options.maxVersion,
      secureOptions: options.secureOptions,
      ...(options.send === undefined ? { ALPNProtocols: ['http/1.1'] } : {}),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 10 s (got ${JSON.stringify(body)})`));
    }, 10_000);
    socket.on('session', (s: Buffer) => {
      latest = s;
    });
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write(options.send ?? `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      body += d;
      // TLS 1.3 tickets arrive before the answer: ending now still has them.
      if (body === options.until) socket.end();
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reused, session: latest, body });
    });
  });
}
