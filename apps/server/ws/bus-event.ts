import { Decoder, Encoder } from '@msgpack/msgpack';
import { type Envelope, emptyBytes, int64Max, int64Min } from './envelope.js';

/**
 * What hubs tell each other over the bus, as one compact msgpack array:
 * `[kind, target, origin, type, channel, data, timestamp, client_id]`.
 * `origin` is the sending node's id (presence remembers who holds a member).
 * `target` is the channel, room or client id the kind addresses.
 */
export type BusEventKind = 'publish' | 'room' | 'broadcast' | 'direct' | 'join' | 'leave';

export interface BusEvent {
  kind: BusEventKind;
  target: string;
  origin: string;
  message: Envelope;
}

const kinds: readonly BusEventKind[] = ['publish', 'room', 'broadcast', 'direct', 'join', 'leave'];
const encoder = new Encoder({ useBigInt64: true });
const decoder = new Decoder({ useBigInt64: true });

export function encodeBusEvent(kind: BusEventKind, target: string, origin: string, m: Envelope): Uint8Array {
  return encoder.encode([
    kinds.indexOf(kind),
    target,
    origin,
    m.type,
    m.channel,
    m.data,
    m.timestamp,
    m.clientId,
  ]);
}

/** `undefined` for a payload that is not a hub event (another hub version, noise). */
export function decodeBusEvent(payload: Uint8Array): BusEvent | undefined {
  let v: unknown;
  try {
    v = decoder.decode(payload);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 8) return undefined;
  const [k, target, origin, type, channel, data, timestamp, clientId] = v as unknown[];
  const kind = typeof k === 'number' ? kinds[k] : undefined;
  if (
    !kind ||
    typeof target !== 'string' ||
    typeof origin !== 'string' ||
    typeof type !== 'string' ||
    typeof channel !== 'string'
  )
    return undefined;
  if (typeof clientId !== 'string' || !(data instanceof Uint8Array)) return undefined;
  // a foreign publisher on the bus channel may write a float (seconds, NaN): BigInt() would throw
  // out of the Redis client's event handler and crash the process
  let ts = 0n;
  if (typeof timestamp === 'bigint') ts = timestamp;
  else if (typeof timestamp === 'number') {
    if (!Number.isInteger(timestamp)) return undefined;
    ts = BigInt(timestamp);
  }
  if (ts < int64Min || ts > int64Max) return undefined;
  return {
    kind,
    target,
    origin,
    message: {
      type,
      channel,
      data: data.length > 0 ? data : emptyBytes,
      timestamp: ts,
      clientId,
      offset: '',
    },
  };
}
