/**
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
import { isIP } from 'node:net';
import proxyaddr from 'proxy-addr';
import { HypError } from '../../supervisor/errors.js';

export type ClientIpResolver = (req: IncomingMessage | Http2ServerRequest) => string;

/** The longest textual IP address: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`. */
const maxAddressLength = 45;

export function clientIpResolver(trusted: readonly string[]): ClientIpResolver {
  if (trusted.length === 0) return peerAddress;
  let trust: ReturnType<typeof proxyaddr.compile>;
  try {
    trust = proxyaddr.compile([...trusted]);
  } catch (err) {
    throw new HypError('HYP_E_CONFIG_INVALID', {
      path: 'server.trusted_proxies',
      detail: `${(err as Error).message} (expected addresses, CIDRs, loopback, linklocal or uniquelocal)`,
    });
  }
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

function peerAddress(req: IncomingMessage | Http2ServerRequest): string {
  return req.socket?.remoteAddress ?? '';
}
