/** The client certificate of an mTLS connection, as handlers may trust it. */
import type { Socket } from 'node:net';
import type { PeerCertificate, TLSSocket, Server as TlsServer } from 'node:tls';

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

/**
 * Why the client's certificate failed verification against the configured
 * CA (`DEPTH_ZERO_SELF_SIGNED_CERT`, `CERT_HAS_EXPIRED`, ...), if it did.
 * Under `client_auth: require` Node refuses such a certificate after the
 * handshake by closing the socket, and reports "socket hang up" to
 * 'tlsClientError', as if the client had left: the reason is only here.
 * Node sets a code string, though its types say Error.
 */
export function clientCertificateRefusal(socket: TLSSocket): string | undefined {
  const why: unknown = socket.authorizationError;
  if (typeof why === 'string') return why || undefined;
  return why instanceof Error ? why.message : undefined;
}

/** `host:port` of a peer (`[v6]:port`), or '' when unknown. */
function endpoint(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return '';
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * The peer of each connection a listening `tls.Server` accepts, for its
 * 'tlsClientError' log line: by then the socket is destroyed and no longer
 * knows its peer (Node 20 and 26). Noted at accept (one getpeername per
 * connection); the TLSSocket reaches its accepted socket as `_parent` (not
 * public API, but stable from Node 20 through 26; the mTLS specs fail if it
 * goes). Returns the lookup: '' for a socket it did not see.
 */
export function peersOf(server: TlsServer): (socket: TLSSocket) => string {
  const peers = new WeakMap<object, string>();
  server.on('connection', (raw: Socket) => {
    peers.set(raw, endpoint(raw.remoteAddress, raw.remotePort));
  });
  return (socket) => {
    const parent = (socket as TLSSocket & { _parent?: unknown })._parent;
    const known = typeof parent === 'object' && parent !== null ? peers.get(parent) : undefined;
    return known || endpoint(socket.remoteAddress, socket.remotePort);
  };
}

/**
 * An OpenSSL error as its reason and Node's code ('wrong version number
 * (ERR_SSL_WRONG_VERSION_NUMBER)'); its message is OpenSSL's error line,
 * with the library's packed code and a source path of Node's build
 * ('80AC…:error:0A00010B:SSL routines:ssl3_get_record:wrong version
 * number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:').
 */
export function opensslReason(err: Error): string {
  const { reason, code } = err as { reason?: unknown; code?: unknown };
  if (typeof reason === 'string' && reason !== '' && typeof code === 'string' && code.startsWith('ERR_SSL_'))
    return `${reason} (${code})`;
  return err.message.trim();
}
