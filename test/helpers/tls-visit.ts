/** One HTTPS request on a fresh TLS connection that offers `session`, for session-resumption tests. */
import { connect } from 'node:tls';

export interface TlsVisit {
  /** The server resumed the offered session. */
  reused: boolean;
  /** The session to offer next time (the last one the server sent). */
  session: Buffer | undefined;
  /** Everything the server answered. */
  body: string;
}

export function tlsVisit(
  port: number,
  ca: Buffer,
  session: Buffer | undefined,
  path: string,
): Promise<TlsVisit> {
  return new Promise((resolve, reject) => {
    let latest: Buffer | undefined;
    let reused = false;
    let body = '';
    const socket = connect({ host: '127.0.0.1', port, ca, session, ALPNProtocols: ['http/1.1'] });
    socket.on('session', (s: Buffer) => {
      latest = s;
    });
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      body += d;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ reused, session: latest, body }));
  });
}
