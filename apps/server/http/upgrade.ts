/**
 * HTTP/1.1 `Upgrade` requests: which leave HTTP (WebSocket handshakes only),
 * and how a refused one is answered on its raw socket.
 * Any other upgrade — `h2c` from `curl --http2`, `TLS/1.2`, a typo — is
 * served as the plain HTTP/1.1 request it also is; RFC 9110 §7.8 lets a
 * server ignore Upgrade. Node ≥ 24.9 asks `shouldUpgradeCallback`; older
 * Node sends every Upgrade request to 'upgrade', where the app answers it
 * the same way (`App.handleUpgrade`).
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HypError } from '../../../supervisor/errors.js';

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  if (upgrade === undefined) return false;
  for (const token of upgrade.split(',')) if (token.trim().toLowerCase() === 'websocket') return true;
  return false;
}

/**
 * Answer an upgrade request on its raw socket (Node has handed it over) and
 * close it: the answer out, the socket is gone whether or not the peer ever
 * closes its side, as `ws` does. A peer's reset meanwhile is no uncaught error.
 * The status is the error's; the body its JSON problem.
 */
export function refuseUpgrade(socket: Duplex, err: HypError): void {
  socket.on('error', destroySocket);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(err.toProblem());
  socket.once('finish', destroySocket);
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\nconnection: close\r\n` +
      `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

export function destroySocket(this: Duplex): void {
  this.destroy();
}
