/**
 * The client's address. `X-Forwarded-For` is believed only hop by hop from
 * the socket peer inward while each hop is a trusted proxy
 * (`server.trusted_proxies`: addresses, CIDRs, or proxy-addr's names
 * `loopback`, `linklocal`, `uniquelocal`); with no trusted proxies it is
 * ignored and the socket peer is the client.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import proxyaddr from 'proxy-addr';
import { HypError } from '../../supervisor/errors.js';

export type ClientIpResolver = (req: IncomingMessage | Http2ServerRequest) => string;

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
  return (req) => proxyaddr(req as IncomingMessage, trust);
}

function peerAddress(req: IncomingMessage | Http2ServerRequest): string {
  return req.socket?.remoteAddress ?? '';
}
