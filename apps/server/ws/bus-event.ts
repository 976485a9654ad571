import { Decoder, Encoder } from '@msgpack/msgpack';
import { type Envelope, emptyBytes, int64Max, int64Min } from './envelope.js';
import type { AliveFacts, SnapshotChunk } from './presence.js';

/**
 * What hubs tell each other over the bus, as one compact msgpack array:
 * `[kind, target, origin, type, channel, data, timestamp, client_id]`.
 * `origin` is the sending node's id (presence remembers who holds a member).
 * `target` is the channel, room or client id the kind addresses.
 *
 * Presence upkeep (docs/websocket.md, Presence) adds three kinds, appended so
 * that a node that predates them decodes them as unknown and ignores them;
 * they carry their facts msgpack-encoded in `data`:
 * - `alive` (target ''): `[count, digest, intervalMs]`, the origin's own memberships.
 * - `sync` (target: the node asked): send me your memberships.
 * - `members` (target: the node that asked): `[snapshot, index, final, [room, client, …]]`,
 *   one chunk of the origin's memberships; the chunks of a snapshot go back to back.
 */
export type BusEventKind =
  | 'publish'
  | 'room'
  | 'broadcast'
  | 'direct'
  | 'join'
  | 'leave'
  | 'alive'
  | 'sync'
  | 'members';

export interface BusEvent {
  kind: BusEventKind;
  target: string;
  origin: string;
  message: Envelope;
}

// the index is the wire value: append only
const kinds: readonly BusEventKind[] = [
  'publish',
  'room',
  'broadcast',
  'direct',
  'join',
  'leave',
  'alive',
  'sync',
  'members',
];
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

/** `alive`'s data: the origin's own membership count and digest, and how often it announces. */
export function encodeAlive(facts: AliveFacts): Uint8Array {
  return encoder.encode([facts.count, facts.digest, facts.intervalMs]);
}

export function decodeAlive(data: Uint8Array): AliveFacts | undefined {
  const v = decodeData(data);
  if (!Array.isArray(v) || v.length < 3) return undefined;
  const [count, digest, intervalMs] = v as unknown[];
  if (!isCount(count) || !isCount(digest) || digest > 0xffffffff || !isCount(intervalMs)) return undefined;
  return { count, digest, intervalMs };
}

export function encodeMembersChunk(chunk: SnapshotChunk): Uint8Array {
  return encoder.encode([chunk.snapshot, chunk.index, chunk.final, chunk.pairs]);
}

export function decodeMembersChunk(data: Uint8Array): SnapshotChunk | undefined {
  const v = decodeData(data);
  if (!Array.isArray(v) || v.length < 4) return undefined;
  const [snapshot, index, final, pairs] = v as unknown[];
  if (!isCount(snapshot) || !isCount(index) || typeof final !== 'boolean') return undefined;
  if (!Array.isArray(pairs) || pairs.length % 2 !== 0) return undefined;
  for (const p of pairs) if (typeof p !== 'string') return undefined;
  return { snapshot, index, final, pairs: pairs as string[] };
}

function decodeData(data: Uint8Array): unknown {
  try {
    return decoder.decode(data);
  } catch {
    return undefined;
  }
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
