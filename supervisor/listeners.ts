/**
 * Listeners the supervisor holds for the life of the pod.
 *
 * Each socket is created bound but not polled, with the same internal handle
 * factories Node's cluster module uses. The first worker's `listen({fd})`
 * turns a TCP socket to LISTEN; from then on the kernel keeps completing
 * handshakes into the backlog whether or not any worker runs, because this
 * process keeps the fd open. The supervisor never accepts or reads on them.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import net, { isIP } from 'node:net';
import { constants } from 'node:os';
import { parseAddress } from './config/units.js';
import { HypError } from './errors.js';

export type ListenerKind = 'tcp' | 'udp';

export interface HeldListener {
  readonly name: string;
  readonly kind: ListenerKind;
  /** The address as configured. */
  readonly addr: string;
  readonly fd: number;
  /** Bound address (the real port when the configured one was 0). */
  readonly host: string;
  readonly port: number;
  close(): void;
}

interface RawHandle {
  fd: number;
  close(cb?: () => void): void;
  getsockname(out: Record<string, unknown>): number;
}

type CreateServerHandle = (
  address: string | null,
  port: number,
  addressType: number,
  fd: number | undefined,
  flags?: number,
) => RawHandle | number;
type CreateSocketHandle = (
  address: string,
  port: number,
  addressType: string,
  fd: number | undefined,
  flags: number,
) => RawHandle | number;

const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })
  ._createServerHandle;
/**
 * UDP: `dgram._createSocketHandle` up to Node 2x; newer Node removed it, so
 * build the same bound-only handle from the udp_wrap binding it used.
 */
const createSocketHandle: CreateSocketHandle =
  (dgram as unknown as { _createSocketHandle?: CreateSocketHandle })._createSocketHandle ??
  ((address, port, addressType, _fd, flags) => {
    const { UDP } = (process as unknown as { binding(name: string): { UDP: new () => UdpHandle } }).binding(
      'udp_wrap',
    );
    const handle = new UDP();
    const err =
      addressType === 'udp6' ? handle.bind6(address, port, flags) : handle.bind(address, port, flags);
    if (err) {
      handle.close();
      return err;
    }
    return handle;
  });

interface UdpHandle extends RawHandle {
  bind(address: string, port: number, flags: number): number;
  bind6(address: string, port: number, flags: number): number;
}

function errnoName(code: number): string {
  return Object.entries(constants.errno).find(([, v]) => v === -code)?.[0] ?? `errno ${code}`;
}

/** The usual ways out of a bind error, after its errno name. */
function withHint(errno: string, port: number): string {
  if ((errno === 'EACCES' || errno === 'EPERM') && port > 0 && port < 1024)
    return `${errno}: ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port >= 1024 (the chart maps the Service port to it)`;
  if (errno === 'EADDRINUSE') return `${errno}: another process holds this port`;
  if (errno === 'EADDRNOTAVAIL') return `${errno}: no interface of this host has that address`;
  return errno;
}

async function resolveHost(
  name: string,
  addr: string,
  host: string | undefined,
): Promise<{ host: string | null; family: 4 | 6 }> {
  if (host === undefined) return { host: null, family: 6 };
  const type = isIP(host);
  if (type === 4 || type === 6) return { host, family: type };
  try {
    const found = await lookup(host);
    return { host: found.address, family: found.family === 6 ? 6 : 4 };
  } catch (err) {
    throw new HypError('HYP_E_LISTEN', {
      name,
      addr,
      detail: `cannot resolve ${host}: ${(err as Error).message}`,
    });
  }
}

function probeTcp(name: string, addr: string, host: string | null, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(new HypError('HYP_E_LISTEN', { name, addr, detail: withHint(err.code ?? err.message, port) })),
    );
    probe.listen({ host: host ?? undefined, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** Bind a TCP or UDP socket and keep it; throws HYP_E_LISTEN (exit 2) when the address is unusable. */
export async function holdListener(
  name: string,
  addr: string,
  kind: ListenerKind = 'tcp',
): Promise<HeldListener> {
  const parsed = parseAddress(addr);
  if (!parsed) throw new HypError('HYP_E_ADDRESS_INVALID', { addr, detail: 'expected host:port' });
  const { host, family } = await resolveHost(name, addr, parsed.host);

  let handle: RawHandle | number;
  if (kind === 'tcp') {
    // libuv defers EADDRINUSE from bind() to listen(), which only a worker
    // calls; probe with a real listen so the operator hears it now (exit 2).
    if (parsed.port !== 0) await probeTcp(name, addr, host, parsed.port);
    handle = createServerHandle(host, parsed.port, family, undefined, 0);
  } else {
    const type = family === 6 ? 'udp6' : 'udp4';
    // Deprecated for users (DEP0112) but it is the handle factory cluster
    // uses; a dgram.Socket would start receiving as soon as it is bound.
    const quiet = process.noDeprecation;
    process.noDeprecation = true;
    try {
      handle = createSocketHandle(host ?? (family === 6 ? '::' : '0.0.0.0'), parsed.port, type, undefined, 0);
    } finally {
      process.noDeprecation = quiet;
    }
  }
  if (typeof handle === 'number') {
    throw new HypError('HYP_E_LISTEN', { name, addr, detail: withHint(errnoName(handle), parsed.port) });
  }
  const bound: Record<string, unknown> = {};
  handle.getsockname(bound);
  const raw = handle;
  let closed = false;
  return {
    name,
    kind,
    addr,
    fd: raw.fd,
    host: String(bound.address ?? host ?? ''),
    port: Number(bound.port ?? parsed.port),
    close() {
      if (closed) return;
      closed = true;
      raw.close();
    },
  };
}
