/**
 * Which HTTP/1.1 `Upgrade` requests leave HTTP: WebSocket handshakes only.
 * Any other upgrade — `h2c` from `curl --http2`, `TLS/1.2`, a typo — is
 * served as the plain HTTP/1.1 request it also is; RFC 9110 §7.8 lets a
 * server ignore Upgrade. Node ≥ 24.9 asks `shouldUpgradeCallback`; older
 * Node sends every Upgrade request to 'upgrade', where the app answers it
 * the same way (`App.handleUpgrade`).
 */
import type { IncomingMessage } from 'node:http';

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  if (upgrade === undefined) return false;
  for (const token of upgrade.split(',')) if (token.trim().toLowerCase() === 'websocket') return true;
  return false;
}
