/**
 * The message envelope every codec carries (HypGo's `Message`): `type`,
 * `channel`, `data`, `timestamp` (int64 Unix nanoseconds) and `client_id`.
 * Empty strings, empty data and a zero timestamp mean "absent" and are
 * omitted on the wire.
 *
 * hyp adds two optional fields beyond HypGo. `offset`, on deliveries from a
 * channel with history: the position a client resumes from after a
 * reconnect. `id`, a publish id the client chose: on its `publish` or
 * `broadcast`, on the deliveries of that publish and on the hub's answer to
 * it (`published` or `error`). HypGo peers ignore both (unknown JSON/msgpack
 * keys, unknown protobuf fields 6 and 7, unknown FlatBuffers slots 5 and 6).
 *
 * This module is shared by the server and the client library: no Node-only
 * APIs (no Buffer), only Uint8Array, TextEncoder and TextDecoder.
 */

export interface Envelope {
  type: string;
  channel: string;
  /** Opaque payload bytes; for JSON publishers the raw JSON text. */
  data: Uint8Array;
  /** Unix nanoseconds; 0n when absent. */
  timestamp: bigint;
  clientId: string;
  /** hyp extension: resume position of a channel delivery, '' when absent. */
  offset: string;
  /**
   * hyp extension: the publish id a client chose (acknowledged publishes).
   * Absent, not '', when the frame has none: envelopes built before it
   * existed stay whole, and a frame without one encodes as before.
   */
  id?: string;
}

export const emptyBytes: Uint8Array = new Uint8Array(0);

// Typed by what is used of them: inferred, they would be Node's `import("util")`
// classes in the declarations, which a browser project type-checking hyp/client
// (skipLibCheck: false) cannot resolve; this package's lib has no DOM types to name.
/** UTF-8 encoding, as `TextEncoder` does it. */
export interface Utf8Encoder {
  encode(input?: string): Uint8Array;
}
/** UTF-8 decoding, as `TextDecoder` does it. */
export interface Utf8Decoder {
  decode(input?: Uint8Array): string;
}

export const utf8Encoder: Utf8Encoder = new TextEncoder();
export const utf8Decoder: Utf8Decoder = new TextDecoder();
/**
 * For the envelope's string fields: refuses bytes that are not UTF-8 (a
 * lenient decode would turn different bytes into one name) and keeps a
 * leading U+FEFF as part of the string.
 */
export const utf8StrictDecoder: Utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export const int64Min = -(1n << 63n);
export const int64Max = (1n << 63n) - 1n;

export function envelope(fields: Partial<Envelope>): Envelope {
  const m: Envelope = {
    type: fields.type ?? '',
    channel: fields.channel ?? '',
    data: fields.data ?? emptyBytes,
    timestamp: fields.timestamp ?? 0n,
    clientId: fields.clientId ?? '',
    offset: fields.offset ?? '',
  };
  if (fields.id) m.id = fields.id;
  return m;
}

/** Longest publish id, in characters. */
export const maxPublishIdLength = 64;

/**
 * Why `id` cannot be a publish id, or undefined when it can: 1 to
 * `maxPublishIdLength` printable ASCII characters (0x21-0x7e). It travels
 * back in acknowledgements and error frames and is a dedupe key beside the
 * client id: no spaces, controls or NULs (the hub joins it to the client id
 * with a NUL on the bus), nothing a log line could be forged with.
 */
export function publishIdProblem(id: string): string | undefined {
  if (id.length === 0) return 'is empty';
  if (id.length > maxPublishIdLength)
    return `is ${id.length} characters long, more than ${maxPublishIdLength}`;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x21 || c > 0x7e)
      return `holds ${c < 0x80 ? `0x${c.toString(16).padStart(2, '0')}` : 'a non-ASCII character'} at index ${i}; only printable ASCII (0x21-0x7e) is allowed`;
  }
  return undefined;
}

let lastNs = 0n;
/** A wall clock stepped back further than this is followed; smaller steps back (NTP, jitter) are not. */
const maxStepBackNs = 1_000_000_000n;

/**
 * Unix time in nanoseconds: the wall clock, with sub-millisecond digits from
 * the monotonic clock so that stamps within one millisecond differ. Peers
 * compare stamps with their own wall clocks (the hub's replay guard), so a
 * stamp never drifts from this process's wall clock: not after a laptop or
 * VM wakes from sleep (the monotonic clock stood still meanwhile), nor after
 * the clock was set. Stamps increase strictly, except when the wall clock is
 * stepped back by more than a second: that step is followed.
 */
export function nowNs(): bigint {
  const sub = typeof performance === 'object' ? Math.floor((performance.now() % 1) * 1e6) : 0;
  let ns = BigInt(Date.now()) * 1_000_000n + BigInt(sub);
  if (ns <= lastNs && lastNs - ns < maxStepBackNs) ns = lastNs + 1n;
  lastNs = ns;
  return ns;
}

/** JSON text of `value` as data bytes (HypGo's `json.RawMessage`). */
/** Payload of a send: bytes as they are, anything else as JSON text. */
export type Payload =
  | Uint8Array
  | string
  | number
  | boolean
  | null
  | readonly unknown[]
  | { readonly [k: string]: unknown };

/**
 * `bytes` as a copy that owns its memory, or `bytes` itself when it already
 * spans its whole buffer. Decoders return `data` as a view into the frame
 * they read (for the hub, the socket's read chunk): whatever keeps a message
 * beyond the current tick (history, held deliveries) keeps this instead, so
 * a few bytes never pin a whole chunk.
 */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  return bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);
}

export function jsonData(value: unknown): Uint8Array {
  return utf8Encoder.encode(JSON.stringify(value));
}

export function textData(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}
