/**
 * What a trusted proxy may tell about the client: its address
 * (`X-Forwarded-For`, `c.clientIp`) and the scheme it used
 * (`X-Forwarded-Proto`, `c.protocol`).
 *
 * The client's address. `X-Forwarded-For` is believed only hop by hop from
 * the socket peer inward while each hop is a trusted proxy
 * (`server.trusted_proxies`: addresses, CIDRs, or proxy-addr's names
 * `loopback`, `linklocal`, `uniquelocal`); with no trusted proxies it is
 * ignored and the socket peer is the client.
 *
 * The walk is proxy-addr's (as Express's `req.ip`), with one difference: an
 * entry that is not an IP address (`unknown`, `1.2.3.4:5`, a hostname,
 * markup, kilobytes of junk) ends it, and the last address reached — the
 * trusted proxy that wrote the entry — is the client IP. So the value is
 * always an address (at most 45 characters, no control characters) or ''
 * when the socket is already gone.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { isIP, type Socket } from 'node:net';
import proxyaddr from 'proxy-addr';
import { HypError } from '../../supervisor/errors.js';

export type ClientIpResolver = (req: IncomingMessage | Http2ServerRequest) => string;

/** The longest textual IP address: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`. */
const maxAddressLength = 45;

export function clientIpResolver(trusted: readonly string[]): ClientIpResolver {
  if (trusted.length === 0) return peerAddress;
  const trust = compileTrust(trusted);
  return (req) => {
    // [socket peer, trusted hops inward..., the first untrusted entry]
    const hops = proxyaddr.all(req as IncomingMessage, trust);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i];
      if (hop !== undefined && hop.length <= maxAddressLength && isIP(hop) !== 0) return hop;
    }
    return '';
  };
}

/** The scheme the client used: `c.protocol`. */
export type Protocol = 'http' | 'https';

/** A request's header reader (`c.header(name)`: several lines joined with `, `). */
export interface HeaderSource {
  header(name: string): string | undefined;
}

/**
 * `(socket, request) => scheme`: the socket's own (`https` over TLS), or,
 * when the socket peer is a trusted proxy, the first value of its
 * `X-Forwarded-Proto` — as Express's `req.protocol` with `trust proxy`
 * (only the peer's trust counts: the proxy that terminated TLS is the one
 * that connects). Unlike Express, only `http` or `https` (any case) is
 * believed; any other value leaves the socket's scheme. The header is read
 * only when the peer is trusted.
 */
export type ProtocolResolver = (socket: Socket | undefined, request: HeaderSource) => Protocol;

export function protocolResolver(trusted: readonly string[]): ProtocolResolver {
  if (trusted.length === 0) return socketProtocol;
  const trust = compileTrust(trusted);
  return (socket, request) => {
    const own = socketProtocol(socket);
    const peer = socket?.remoteAddress;
    if (peer === undefined || !trust(peer, 0)) return own;
    const header = request.header('x-forwarded-proto');
    if (header === undefined) return own;
    const comma = header.indexOf(',');
    // Longer than `https` with its spaces trimmed: not worth lowering.
    const first = (comma < 0 ? header : header.slice(0, comma)).trim();
    if (first.length > 5) return own;
    const scheme = first.toLowerCase();
    return scheme === 'https' || scheme === 'http' ? scheme : own;
  };
}

function socketProtocol(socket: Socket | undefined): Protocol {
  return (socket as { encrypted?: boolean } | undefined)?.encrypted === true ? 'https' : 'http';
}

function compileTrust(trusted: readonly string[]): ReturnType<typeof proxyaddr.compile> {
  try {
    return proxyaddr.compile([...trusted]);
  } catch (err) {
    throw new HypError('HYP_E_CONFIG_INVALID', {
      path: 'server.trusted_proxies',
      detail: `${(err as Error).message} (expected addresses, CIDRs, loopback, linklocal or uniquelocal)`,
    });
  }
}

function peerAddress(req: IncomingMessage | Http2ServerRequest): string {
  return req.socket?.remoteAddress ?? '';
}
