/** The client certificate of an mTLS connection, as handlers may trust it. */
import type { PeerCertificate, TLSSocket } from 'node:tls';

/**
 * The certificate the peer of `socket` presented, when it verified against
 * the configured CA; undefined for a cleartext socket, a client without a
 * certificate, or one whose certificate did not verify (it names nobody).
 */
export function verifiedPeerCertificate(socket: unknown): PeerCertificate | undefined {
  const tls = socket as TLSSocket | undefined;
  if (tls === undefined || tls === null || !tls.encrypted || !tls.authorized) return undefined;
  const cert = tls.getPeerCertificate();
  return cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0 ? cert : undefined;
}
