/**
 * hyp's WebSocket client, for browsers and Node: negotiates a codec,
 * optionally seals every frame (WebCrypto), reconnects with exponential
 * backoff and full jitter, and on reconnect resubscribes each channel from
 * the last offset it saw, so nothing published meanwhile is lost (or an
 * explicit HYP_E_WS_RECOVERY_FAILED error says it cannot be recovered).
 *
 *   const ws = new HypWebSocket('wss://example.com/ws', { codec: 'msgpack' });
 *   ws.subscribe('news', (m) => console.log(m.json()));
 *   await ws.connect();
 *   ws.publish('news', { headline: 'hi' });
 *   const { offset } = await ws.publishAck('news', { headline: 'acknowledged' });
 */
import { type ErrorCode, HypError } from '../../supervisor/errors.js';
import { type Codec, type CodecName, codecByName } from '../server/ws/codecs/index.js';
import { checkWellFormedName } from '../server/ws/codecs/surrogates.js';
import { Control } from '../server/ws/control.js';
import {
  type Envelope,
  emptyBytes,
  envelope,
  nowNs,
  publishIdProblem,
  utf8Decoder,
  utf8Encoder,
} from '../server/ws/envelope.js';
import { type ConnectErrorEvent, errorMessage, unknownFailure, watchHandshake } from './handshake.js';
import { ClientReplayGuard } from './replay.js';
import { type ClientKeys, ClientSecurity } from './security.js';

/**
 * An event handler property. Typed as a method is (parameters compared both
 * ways), so that the richer handlers of the DOM's WebSocket and of `ws` fit:
 * their events carry at least what the client reads.
 */
export type SocketHandler<E> = { handle(event: E): void }['handle'];

/** The browser WebSocket surface, which `ws` implements too. */
export interface SocketLike {
  readonly readyState: number;
  readonly protocol: string;
  /** Bytes sent and not yet written to the network (browsers and `ws` have it). */
  readonly bufferedAmount?: number;
  binaryType: string;
  send(data: string | Uint8Array<ArrayBuffer>): void;
  close(code?: number, reason?: string): void;
  onopen: SocketHandler<unknown> | null;
  onmessage: SocketHandler<{ data: unknown }> | null;
  onclose: SocketHandler<{ code: number; reason: string }> | null;
  onerror: SocketHandler<unknown> | null;
}

/**
 * A WebSocket class: the global one (browsers, Node ≥ 22), `ws`'s, or a
 * subclass of either. On Node the client passes `ws` options (`maxPayload`)
 * as a third argument, which a browser's ignores.
 */
export type SocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike;

/**
 * What a send takes: bytes as they are — a Uint8Array, an ArrayBuffer or a
 * SharedArrayBuffer, any view of one (DataView, Int16Array, a Node Buffer) —
 * anything else as JSON text.
 */
export type Payload =
  | ArrayBufferLike
  | ArrayBufferView
  | string
  | number
  | boolean
  | null
  | readonly unknown[]
  | { readonly [k: string]: unknown };

export interface ReconnectOptions {
  /** Default true. */
  enabled?: boolean;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this many consecutive failed attempts (default: never). */
  maxAttempts?: number;
}

export interface HypWebSocketOptions {
  /** Default 'json'. */
  codec?: CodecName;
  /** Sent as `?client_id=` (browsers cannot set headers on a WebSocket). */
  clientId?: string;
  security?: ClientKeys;
  reconnect?: ReconnectOptions;
  /** WebSocket implementation; default the global one, else the `ws` package (Node). */
  WebSocket?: SocketConstructor;
  /**
   * Messages kept while disconnected and sent after reconnecting. Default
   * 1000; 0 keeps none. Past it the oldest is dropped and reported as an
   * `error` event HYP_E_WS_QUEUE_FULL with its `channel`. With `security`,
   * messages waiting to be sealed while connected count against it too (see
   * `maxQueuedBytes`).
   */
  maxQueued?: number;
  /**
   * The same queue's bound in bytes: a message counts its payload's bytes
   * plus the lengths of its channel and type. Default 16 MiB; 0 keeps none.
   * Past it the oldest are dropped (a message larger than the bound alone:
   * that one), reported as for `maxQueued`. While connected, publishes
   * waiting to be sealed (`security`) are bounded by both, and their bytes
   * plus the socket's `bufferedAmount` by this one (one is always admitted):
   * past either, the new one is not sent and is reported as
   * HYP_E_WS_QUEUE_FULL; the ones before it go out in order.
   */
  maxQueuedBytes?: number;
  /**
   * Largest incoming message, in bytes (as received, before opening). Default
   * 1 MiB: twice the hub's `websocket.max_message_size` default, headroom for
   * what a delivery adds to a publish (client id, offset). With the `ws`
   * package (Node) it is `ws`'s `maxPayload`: a larger message closes the
   * connection with 1009, as the hub does. A browser socket cannot limit it
   * (nor close with 1009): there the message is dropped after receipt and the
   * connection stays open. Both report an `error` event HYP_E_WS_TOO_LARGE.
   */
  maxMessageSize?: number;
  /**
   * Largest outgoing message, in bytes, measured on the frame as it goes out
   * (encoded by the codec, and sealed when `security` is on). Default 512 KiB:
   * the hub's `websocket.max_message_size` default, past which the hub closes
   * the connection with 1009 and what was sent behind the message is lost.
   * Set it to the hub's value when that is changed. A larger `publish`,
   * `broadcast`, `send` or `presence` throws a MessageTooLargeError
   * (HYP_E_WS_TOO_LARGE) at the call; a larger `publishAck` / `broadcastAck`
   * rejects with a PublishAckError HYP_E_WS_TOO_LARGE. Neither is sent or
   * queued.
   */
  maxSendSize?: number;
  /**
   * Incoming frames waiting to be opened (security on: WebCrypto is
   * asynchronous), by count and by bytes. Past either bound the connection is
   * closed with 4008 and an `error` event HYP_E_WS_BACKLOG; the reconnect
   * resumes each channel from its last offset. Defaults 10 000 and 32 MiB.
   */
  maxPendingMessages?: number;
  maxPendingBytes?: number;
  /**
   * Keep the member list of each room joined (`members(room)`), asking the
   * hub for it after every (re)join, and turn the differences into
   * `presence` events. Default true. The hub's answer lists every member
   * in one frame, which `maxMessageSize` bounds. False: no list, no
   * request; presence events come as the hub sends them.
   */
  keepMembers?: boolean;
}

/** One message from the hub. */
export interface HypMessage {
  type: string;
  channel: string;
  data: Uint8Array;
  clientId: string;
  /** Unix nanoseconds. */
  timestamp: bigint;
  offset: string;
  /**
   * The publish id of an acknowledged publish (`publishAck`), absent
   * otherwise. A publish whose acknowledgement was lost is sent again after
   * a reconnect, so it may arrive twice: (clientId, id) identifies it.
   */
  id?: string;
  text(): string;
  json<T = unknown>(): T;
}

/** Error codes whose error always names its `channel`. */
export type ChannelErrorCode = 'HYP_E_WS_RECOVERY_FAILED' | 'HYP_E_WS_RECOVERY_BUSY';

interface ErrorFrameFields {
  message: string;
  /** The offset the error names: a resume position, or a byte offset (HYP_E_WS_DECODE). */
  offset?: number | string;
  /** The publish id of the acknowledged publish the error refuses. */
  id?: string;
  /** The room the error concerns: the one a refused `join_room`, `leave_room` or `presence` named. */
  room_id?: string;
  /**
   * The type of the room request refused (`join_room`, `leave_room`, `presence`), whatever the
   * reason (a replay refusal too). Hubs before it leave it out.
   */
  request?: string;
}

/** An error that always names its channel: `channel` is a string once `code` is checked. */
export interface ChannelErrorFrame extends ErrorFrameFields {
  code: ChannelErrorCode;
  channel: string;
}

/** Every other error; `channel` when the error concerns one. */
export interface OtherErrorFrame extends ErrorFrameFields {
  code: Exclude<ErrorCode, ChannelErrorCode>;
  channel?: string;
}

/**
 * An `error` event: a refusal from the hub or a problem the client found.
 * Discriminated by `code`: after `e.code === 'HYP_E_WS_RECOVERY_FAILED'`,
 * `e.channel` is a string. Codes are the catalog's (supervisor/errors.ts);
 * a newer hub may send a code this type does not list yet.
 */
export type HypErrorFrame = ChannelErrorFrame | OtherErrorFrame;

/** What an acknowledged publish resolves with. */
export interface PublishAck {
  /** The delivery's offset in the channel's history ('' for a broadcast or a hub without history). */
  offset: string;
}

export interface PublishAckOptions {
  /**
   * Milliseconds to wait for the hub's acknowledgement, counted from the
   * call (time disconnected included). Default 30 000. On expiry the promise
   * rejects with HYP_E_WS_ACK_TIMEOUT and the publish is not sent again.
   */
  timeoutMs?: number;
  /**
   * The publish id (1-64 printable ASCII characters), unique for this
   * client id: subscribers dedupe by (client id, publish id). Default: a
   * random per-client prefix and a counter.
   */
  id?: string;
}

/** Options of `publish`, `broadcast` and `send`. */
export interface SendOptions {
  /**
   * Drop the message rather than let it wait when it cannot go out now
   * (Socket.IO's `volatile`): while disconnected (it is not queued), or
   * while bytes wait ahead of it — in the socket's `bufferedAmount`, or
   * frames being sealed (`security`). A dropped one is not reported as an
   * `error` event: the call returns false. For state that the next message
   * replaces (a cursor, a typing indicator, a game tick).
   */
  volatile?: boolean;
}

/**
 * The rejection of `publishAck`: the hub's `error` frame for that publish
 * (its code, message and channel), HYP_E_WS_ACK_TIMEOUT,
 * HYP_E_WS_ACK_CLOSED (the client closed for good first), or
 * HYP_E_WS_QUEUE_FULL / HYP_E_WS_SEAL (never sent). `id` names the publish.
 */
export class PublishAckError extends Error {
  /** The catalog's code (a newer hub may send one this type does not list yet). */
  readonly code: ErrorCode;
  readonly channel: string;
  readonly id: string;

  constructor(code: ErrorCode, message: string, channel: string, id: string) {
    super(message);
    this.name = 'PublishAckError';
    this.code = code;
    this.channel = channel;
    this.id = id;
  }
}

/**
 * Thrown by `publish`, `broadcast`, `send` and `presence` for a message whose
 * frame is larger than `maxSendSize`: it is not sent (the hub would close
 * the connection with 1009) and not queued.
 */
export class MessageTooLargeError extends RangeError {
  readonly code = 'HYP_E_WS_TOO_LARGE';
  /** The message's channel ('' for a broadcast or a room request). */
  readonly channel: string;
  /** The frame's bytes, as it would have gone out. */
  readonly size: number;
  /** `maxSendSize`. */
  readonly limit: number;

  constructor(message: string, channel: string, size: number, limit: number) {
    super(message);
    this.name = 'MessageTooLargeError';
    this.channel = channel;
    this.size = size;
    this.limit = limit;
  }
}

/** An acknowledged publish not yet acknowledged: sent again with its id after a reconnect. */
interface Unacked {
  message: Envelope;
  size: number;
  resolve: (ack: PublishAck) => void;
  reject: (err: PublishAckError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** A room the client joined: its member list, as last known. */
interface RoomView {
  /** Client ids, in the order the client learned them. */
  readonly members: Set<string>;
  /**
   * The connection on which the hub accepted a join (it answered or refused a later request of the
   * room): from then on each member-list answer there is the room's list.
   */
  joinedOn: SocketLike | undefined;
}

/** The client's join of a room, and its own member-list request behind it. */
interface JoinAsk {
  kind: 'join';
  view: RoomView;
  /** Refused by the hub (and reported). */
  refused: boolean;
}

/**
 * A request about a room whose answer (a `presence` member list) or refusal (an `error` naming the
 * room) is still to come on this connection: the client's own join and the member-list request it
 * makes right behind it, or the application's `presence(room)`. The hub answers one connection's
 * requests in order, so the first one waiting is the one answered; a join accepted gets no answer
 * (the answer or refusal of a later request of the room tells it).
 */
type RoomAsk = JoinAsk | { kind: 'own'; view: RoomView; join: JoinAsk } | { kind: 'app' };

/** The options `sendNow` takes. */
interface SendHow {
  /** Send while the socket is not open yet (opening: its `onopen`). */
  force?: boolean;
  /** An application message (else a control frame, replayed from state): measured against `maxSendSize`. */
  queueable?: boolean;
  /** Subject to the seal chain's and the send buffer's bounds (default: `queueable`). */
  bounded?: boolean;
  /** Dropped, unreported, when anything waits ahead of it. */
  volatile?: boolean;
  /** The room request this frame is: waits for its answer once sent. */
  ask?: { room: string; ask: RoomAsk };
}

interface Events {
  open: () => void;
  /** An attempt failed before opening (its `close`, 1006, follows); reconnecting goes on as usual. */
  connect_error: (error: ConnectErrorEvent) => void;
  close: (code: number, reason: string) => void;
  reconnecting: (attempt: number, delayMs: number) => void;
  message: (message: HypMessage) => void;
  presence: (message: HypMessage) => void;
  error: (error: HypErrorFrame) => void;
}

type Listener<K extends keyof Events> = Events[K];

const OPEN = 1;

/**
 * Error codes with which a hub that does not name the request refused (before `request`) refuses a
 * join_room, naming the room; a presence request only with the first.
 */
const refusedJoin: ReadonlySet<string> = new Set([
  'HYP_E_WS_FORBIDDEN_CHANNEL',
  'HYP_E_WS_TOO_MANY_SUBSCRIPTIONS',
  'HYP_E_WS_NAME_TOO_LONG',
]);

/** Error codes with which the hub refuses a subscribe: it never started. */
const refusedSubscribe: ReadonlySet<string> = new Set([
  'HYP_E_WS_TOO_MANY_SUBSCRIPTIONS',
  'HYP_E_WS_NAME_TOO_LONG',
  'HYP_E_WS_FORBIDDEN_CHANNEL',
  'HYP_E_WS_RECOVERY_BUSY',
]);

/** A lone surrogate: with the `u` flag, a surrogate pair is one code point and does not match. */

/**
 * Refuses, at the call, a channel or room name every hub refuses whatever
 * its options, with every codec: '' (a request must name one) and a name
 * holding a lone surrogate. That has no UTF-8 form: the hub refuses the
 * request (a room request without naming the room, which the member lists
 * cannot match), and a FlatBuffers publish carries U+FFFD in its place, so
 * it reaches another channel. Nothing is sent. Length is the
 * hub's to judge: its `maxNameLength` is not known here. The error is the
 * hub's own for such names from the app (`hub.publish`).
 */
function checkName(call: string, kind: 'channel' | 'room', name: string): void {
  if (typeof name !== 'string') throw new TypeError(`${kind} must be a string, got ${typeof name}`);
  if (name === '')
    throw new HypError('HYP_E_WS_NAME_INVALID', { call, kind, name: '""', detail: 'is empty' });
  checkWellFormedName(call, kind, name);
}

/**
 * The hub's requests that the client makes with its own methods, and keeps
 * track of: it resubscribes and rejoins after a reconnect, keeps member
 * lists and matches their refusals. Sent through `send`, the hub acted on
 * them (json, msgpack, flatbuffers) while the client knew nothing of it: a
 * room joined that way was not rejoined after a reconnect and had no member
 * list; under protobuf the JSON data was refused as HYP_E_WS_CONTROL. A
 * `publish` or `broadcast` through `send` is what `publish`/`broadcast` send.
 */
const hubRequests = {
  [Control.subscribe]: 'subscribe',
  [Control.unsubscribe]: 'unsubscribe',
  [Control.joinRoom]: 'joinRoom',
  [Control.leaveRoom]: 'leaveRoom',
  [Control.presence]: 'presence',
} as const;

/**
 * What `send` takes as its type: any string but the hub's own requests
 * (hubRequests). A literal one does not compile, and tsc's message names
 * the method to use (`Argument of type '"join_room"' is not assignable to
 * parameter of type '"the type join_room is the hub's: use joinRoom()"'`);
 * a `string` that holds one is refused at the call (checkType).
 */
export type SendType<T extends string> = T extends keyof typeof hubRequests
  ? `the type ${T} is the hub's: use ${(typeof hubRequests)[T]}()`
  : T;

/**
 * Refuses, at the call, a `send` type the hub takes as its own request
 * (hubRequests), and one holding a lone surrogate: json, msgpack and
 * protobuf hubs refused the frame as undecodable (counted towards
 * `maxFailures`), and a FlatBuffers hub handed `onMessage` U+FFFD in its
 * place. '' is a type like any other: every codec's hub hands it on as ''.
 */
function checkType(call: string, type: string): void {
  if (typeof type !== 'string') throw new TypeError(`type must be a string, got ${typeof type}`);
  const method = Object.hasOwn(hubRequests, type) ? hubRequests[type as keyof typeof hubRequests] : undefined;
  if (method !== undefined) throw new HypError('HYP_E_WS_TYPE_RESERVED', { call, type, method });
  checkWellFormedName(call, 'type', type);
}

/**
 * A payload's bytes: bytes as they are — a Uint8Array (also one from another
 * realm: an iframe), an ArrayBuffer or another view of one (as a browser
 * WebSocket's `send` takes them) — anything else as JSON text. Before, an
 * ArrayBuffer went out as `{}` and a foreign Uint8Array as `{"0":…}`.
 * Throws a TypeError for a payload JSON cannot encode (undefined, a
 * function, a symbol), which would otherwise go out as empty data.
 */
function toData(payload: Payload): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === 'object' && payload !== null) {
    if (ArrayBuffer.isView(payload)) {
      return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    }
    const tag = Object.prototype.toString.call(payload);
    if (tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]') {
      return new Uint8Array(payload as unknown as ArrayBuffer);
    }
  }
  const json = JSON.stringify(payload) as string | undefined;
  if (json === undefined)
    throw new TypeError(`cannot send ${typeof payload} as a payload: it has no JSON form`);
  return utf8Encoder.encode(json);
}

/** Why a message over `maxSendSize` is refused. */
function tooLargeDetail(size: number, limit: number): string {
  return `its frame of ${size} bytes exceeds ${limit} bytes (maxSendSize: past its websocket.max_message_size a hub closes the connection with 1009)`;
}

/** What one outgoing message counts against `maxQueuedBytes`: its payload plus its channel and type names. */
function queuedSize(m: Envelope): number {
  return m.data.length + m.channel.length + m.type.length;
}

function message(m: Envelope): HypMessage {
  const msg: HypMessage = {
    type: m.type,
    channel: m.channel,
    data: m.data,
    clientId: m.clientId,
    timestamp: m.timestamp,
    offset: m.offset,
    text: () => utf8Decoder.decode(m.data),
    json: <T>() => JSON.parse(utf8Decoder.decode(m.data)) as T,
  };
  if (m.id) msg.id = m.id;
  return msg;
}

/** A random prefix for this client's publish ids: (client id, publish id) stays unique across page loads. */
function publishIdPrefix(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto?.getRandomValues?.(bytes);
  if (bytes.every((b) => b === 0)) for (let i = 0; i < bytes.length; i++) bytes[i] = Math.random() * 256;
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return hex;
}

async function defaultSocket(): Promise<SocketConstructor> {
  const global = (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
  if (global) return global;
  const name = 'ws'; // not a static import: browser bundles must not pull in the Node package
  const mod = (await import(name)) as { WebSocket: SocketConstructor };
  return mod.WebSocket;
}

/** The longest wait a drain hint may ask for; a larger one (a hostile or broken reason) is cut to it. */
const maxHintMs = 60_000;
/** Longer setTimeout delays fire at once (Node and browsers). */
const maxTimerMs = 2 ** 31 - 1;
/** A connection that stays open this long resets the backoff; one that dies sooner is a failed attempt. */
const stableAfterMs = 5_000;
/** Close code of a connection replaced by a newer one with the same client id. */
const replacedCode = 4000;
/** Close code the client sends when incoming frames pile up faster than they are opened. */
const backlogCode = 4008;
/** The code `ws` gives a message over its maxPayload (it then closes with 1009). */
const wsTooLarge = 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';

function limit(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** A reconnect delay: a finite number of milliseconds ≥ 0 (NaN would make every wait 0: a reconnect storm). */
function delayOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number of milliseconds ≥ 0, got ${value}`);
  }
  return value;
}

/**
 * Reads `reconnect;delay=<ms>` from a 1001 close (hub drain). Parameters
 * after the delay are ignored; a delay that is not a plain decimal number
 * is no hint, one above `maxHintMs` is capped.
 */
function drainHint(code: number, reason: string): number | undefined {
  if (code !== 1001) return undefined;
  const [head, ...params] = reason.split(';');
  if (head !== 'reconnect') return undefined;
  for (const param of params) {
    const m = /^delay=(\d+)$/.exec(param.trim());
    if (m) return Math.min(Number(m[1]), maxHintMs);
  }
  return undefined;
}

const epochMin = 1n << 64n;

/**
 * Where an offset sits in its history: the history it belongs to and a
 * position comparable with others of that history. In-memory `<epoch>:<seq>`,
 * pod-wide `<epoch ≥ 2^64>-<seq>`, Redis stream ids `<ms>-<seq>` (one order
 * across epochs of ms). Undefined for anything else (never compared).
 */
function position(offset: string): { history: string; at: bigint[] } | undefined {
  const colon = offset.lastIndexOf(':');
  if (colon >= 0) {
    const seq = offset.slice(colon + 1);
    return /^\d{1,20}$/.test(seq) ? { history: offset.slice(0, colon), at: [BigInt(seq)] } : undefined;
  }
  const m = /^(\d{1,40})-(\d{1,20})$/.exec(offset);
  if (!m) return undefined;
  const first = BigInt(m[1]!);
  return first >= epochMin
    ? { history: m[1]!, at: [BigInt(m[2]!)] }
    : { history: 'stream', at: [first, BigInt(m[2]!)] };
}

/** False only when both offsets name the same history and `offset` is not after `last`. */
function isAfter(offset: string, last: string): boolean {
  const a = position(offset);
  const b = position(last);
  if (!a || !b || a.history !== b.history || a.at.length !== b.at.length) return true;
  for (let i = 0; i < a.at.length; i++) {
    if (a.at[i]! !== b.at[i]!) return a.at[i]! > b.at[i]!;
  }
  return false;
}

export class HypWebSocket {
  readonly codec: Codec;
  private readonly url: string;
  private readonly security: ClientSecurity | undefined;
  private readonly replayGuard: ClientReplayGuard | undefined;
  private readonly reconnect: Required<ReconnectOptions>;
  private readonly maxQueued: number;
  private readonly maxQueuedBytes: number;
  /** Bytes (as `queuedSize` counts them) of the messages in `queue`. */
  private queuedBytes = 0;
  /** Frames (and their bytes, as `queuedSize` counts them) handed to the seal chain and not yet sent. */
  private sealingMessages = 0;
  private sealingBytes = 0;
  private readonly maxMessageSize: number;
  private readonly maxSendSize: number;
  /**
   * The largest application frame sent on the current connection (bytes on the wire): when the hub closes
   * it with 1009 anyway (its max_message_size below maxSendSize), the one it refused.
   */
  private largestSent: { size: number; message: Envelope } | undefined;
  private readonly maxPendingMessages: number;
  private readonly maxPendingBytes: number;
  private readonly keepMembers: boolean;
  /** Frames (and their bytes) received and not yet opened and dispatched. */
  private pendingMessages = 0;
  private pendingBytes = 0;
  private socket: SocketLike | undefined;
  private ctor: SocketConstructor | undefined;
  private readonly listeners: { [K in keyof Events]: Set<Listener<K>> } = {
    open: new Set(),
    connect_error: new Set(),
    close: new Set(),
    reconnecting: new Set(),
    message: new Set(),
    presence: new Set(),
    error: new Set(),
  };
  /** channel → last offset seen ('' until the first ack or delivery). */
  private readonly channels = new Map<string, string>();
  /**
   * channel → the offset the hub could not resume from (HYP_E_WS_RECOVERY_FAILED), until its ack or a
   * delivery names the new resume point. A reconnect before then resumes from it again, so the hub
   * reports the loss again rather than the client starting silently at the head.
   */
  private readonly gapFrom = new Map<string, string>();
  /**
   * Head subscriptions (no offset yet) whose subscribe went out on a connection and that the hub has not
   * acknowledged yet. The hub may have started them: if that connection drops first, the resubscription
   * at the next head may skip what was published in between, so the reconnect reports it.
   */
  private readonly unacked = new Set<string>();
  /**
   * channel → its resubscription after the hub refused a resume as busy
   * (HYP_E_WS_RECOVERY_BUSY: one replay of the channel already under way on
   * this connection, e.g. of a subscription just left). Retried with a
   * doubling delay (100 ms to 5 s) until acknowledged, left or disconnected.
   */
  private readonly busyRetries = new Map<string, { timer: ReturnType<typeof setTimeout>; attempt: number }>();
  private readonly channelHandlers = new Map<string, Set<(m: HypMessage) => void>>();
  /** channel → which subscription it is (a count over all subscribe() calls that started one). */
  private readonly generation = new Map<string, number>();
  private subscriptions = 0;
  /** The rooms joined (rejoined after every reconnect), each with its member list. */
  private readonly rooms = new Map<string, RoomView>();
  /** room → its requests waiting for an answer on the current connection, in the order sent. */
  private readonly roomAsks = new Map<string, RoomAsk[]>();
  private queue: Envelope[] = [];
  /** Acknowledged publishes awaiting their `published` (insertion order is publish order), and their bytes. */
  private readonly acks = new Map<string, Unacked>();
  private acksBytes = 0;
  private readonly idPrefix = publishIdPrefix();
  private publishCount = 0;
  private inbound: Promise<void> = Promise.resolve();
  private outbound: Promise<void> = Promise.resolve();
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the current connection opened, on the monotonic clock (a wall clock set back or forward must not matter). */
  private openedAt: number | undefined;
  private stopped = false;
  /**
   * Why the client will not connect again by itself, until `connect()`: close(), a 4000, maxAttempts
   * reached, a close with reconnecting disabled. A publishAck meanwhile rejects at once, saying so.
   */
  private down: string | undefined;
  private firstOpen: { resolve: () => void; reject: (e: Error) => void } | undefined;

  /**
   * Throws synchronously on bad options: an unknown codec (TypeError), an
   * invalid URL, a limit that is not a positive integer (maxQueued,
   * maxQueuedBytes, reconnect.maxAttempts: not a non-negative integer;
   * reconnect delays: not a finite number ≥ 0; RangeError), or
   * unusable `security` keys (SecurityError, HYP_E_WS_KEY).
   */
  constructor(url: string, options: HypWebSocketOptions = {}) {
    const codec = codecByName(options.codec ?? 'json');
    if (!codec) throw new TypeError(`unknown codec ${options.codec}`);
    this.codec = codec;
    const u = new URL(url);
    if (options.clientId) u.searchParams.set('client_id', options.clientId);
    this.url = u.toString();
    this.security = options.security ? new ClientSecurity(options.security) : undefined;
    const windowMs = options.security?.replayWindowMs;
    this.replayGuard =
      windowMs === undefined
        ? undefined
        : new ClientReplayGuard({
            windowMs: limit('security.replayWindowMs', windowMs, 0),
            maxEntries: limit('security.replayCacheSize', options.security?.replayCacheSize, 10_000),
          });
    this.reconnect = {
      enabled: options.reconnect?.enabled ?? true,
      initialDelayMs: delayOption('reconnect.initialDelayMs', options.reconnect?.initialDelayMs, 250),
      maxDelayMs: delayOption('reconnect.maxDelayMs', options.reconnect?.maxDelayMs, 10_000),
      maxAttempts: options.reconnect?.maxAttempts ?? Number.POSITIVE_INFINITY,
    };
    // a NaN, negative or fractional bound made every wait NaN or the give-up check never true
    const attempts = this.reconnect.maxAttempts;
    if (attempts !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(attempts) || attempts < 0)) {
      throw new RangeError(`reconnect.maxAttempts must be a non-negative integer, got ${attempts}`);
    }
    this.ctor = options.WebSocket;
    this.maxQueued = options.maxQueued ?? 1000;
    // a negative bound made the trim loop spin forever on the first offline publish
    if (!Number.isSafeInteger(this.maxQueued) || this.maxQueued < 0) {
      throw new RangeError(`maxQueued must be a non-negative integer, got ${options.maxQueued}`);
    }
    this.maxQueuedBytes = options.maxQueuedBytes ?? 16 * 1024 * 1024;
    if (!Number.isSafeInteger(this.maxQueuedBytes) || this.maxQueuedBytes < 0) {
      throw new RangeError(`maxQueuedBytes must be a non-negative integer, got ${options.maxQueuedBytes}`);
    }
    this.maxMessageSize = limit('maxMessageSize', options.maxMessageSize, 1024 * 1024);
    this.maxSendSize = limit('maxSendSize', options.maxSendSize, 512 * 1024);
    this.maxPendingMessages = limit('maxPendingMessages', options.maxPendingMessages, 10_000);
    this.maxPendingBytes = limit('maxPendingBytes', options.maxPendingBytes, 32 * 1024 * 1024);
    this.keepMembers = options.keepMembers ?? true;
  }

  on<K extends keyof Events>(event: K, listener: Listener<K>): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  get connected(): boolean {
    return this.socket?.readyState === OPEN;
  }

  /**
   * Opens the connection; resolves on the first open, rejects if it closes
   * before opening (or `close()` is called first). While connecting or
   * connected, waits for (or returns) that connection instead of opening another.
   */
  async connect(): Promise<void> {
    this.stopped = false;
    this.down = undefined;
    this.ctor ??= await defaultSocket();
    if (this.stopped) throw new Error('connection closed before opening (close() called)');
    if (this.connected) return;
    return new Promise((resolve, reject) => {
      const previous = this.firstOpen;
      this.firstOpen = {
        resolve: () => {
          previous?.resolve();
          resolve();
        },
        reject: (e) => {
          previous?.reject(e);
          reject(e);
        },
      };
      // one socket at a time: a second one would deliver every message twice
      const live = this.socket !== undefined && this.socket.readyState <= OPEN;
      if (!live && !this.timer) {
        // a connect() after giving up (maxAttempts) or a close starts a fresh budget of attempts
        this.attempt = 0;
        this.open();
      }
    });
  }

  /**
   * Subscribes (and resubscribes after every reconnect, from the last offset).
   * `options.offset` (an offset from an earlier delivery, kept by the
   * application) starts the subscription after it instead of at the head;
   * it is ignored when the channel is subscribed already.
   */
  subscribe(
    channel: string,
    handler?: (m: HypMessage) => void,
    options: { offset?: string } = {},
  ): () => void {
    checkName('subscribe', 'channel', channel);
    if (!this.channels.has(channel)) {
      const offset = options.offset ?? '';
      if (typeof offset !== 'string') throw new TypeError(`offset must be a string, got ${typeof offset}`);
      // every codec's hub refuses it without naming the channel (its data does not decode): the
      // subscription would be dead, here and after every reconnect, with no error to tell which one
      checkWellFormedName('subscribe', 'offset', offset);
      // the requested start is the channel's resume point until a delivery moves it: a reconnect before
      // the hub answers resumes from it again rather than from the head
      this.channels.set(channel, offset);
      this.generation.set(channel, ++this.subscriptions);
      this.subscribeNow(channel, offset);
    }
    // the returned function ends this subscription only: called late or twice, after the channel was
    // unsubscribed and subscribed again, it must not end the new one
    const generation = this.generation.get(channel)!;
    const current = () => this.generation.get(channel) === generation;
    if (!handler) {
      return () => {
        if (current()) this.unsubscribe(channel);
      };
    }
    let set = this.channelHandlers.get(channel);
    if (!set) {
      set = new Set();
      this.channelHandlers.set(channel, set);
    }
    set.add(handler);
    return () => {
      if (!current()) return;
      set.delete(handler);
      if (set.size === 0) this.unsubscribe(channel);
    };
  }

  unsubscribe(channel: string): void {
    checkName('unsubscribe', 'channel', channel);
    if (!this.channels.delete(channel)) return;
    this.generation.delete(channel);
    this.gapFrom.delete(channel);
    this.unacked.delete(channel);
    this.stopBusyRetry(channel, true);
    this.channelHandlers.delete(channel);
    this.sendNow({ type: 'unsubscribe', data: this.codec.encodeChannelRequest({ channel, offset: '' }) }, {});
  }

  /** The last offset seen on `channel` (what a reconnect resumes from). */
  offset(channel: string): string | undefined {
    return this.channels.get(channel) || undefined;
  }

  /**
   * Joins `room` (and rejoins it after every reconnect), and keeps its
   * member list (`members(room)`): after each join the client asks the hub
   * for the list itself, and applies the room's join/leave events to it.
   */
  joinRoom(room: string): void {
    checkName('joinRoom', 'room', room);
    let view = this.rooms.get(room);
    if (view === undefined) {
      view = { members: new Set(), joinedOn: undefined };
      this.rooms.set(room, view);
    }
    this.joinNow(room, view);
  }

  /** Leaves `room`; its member list is forgotten at once (no events). */
  leaveRoom(room: string): void {
    checkName('leaveRoom', 'room', room);
    this.rooms.delete(room);
    this.sendNow({ type: 'leave_room', data: this.codec.encodeRoomRequest({ roomId: room }) }, {});
  }

  /**
   * The members of a room the client joined, as last known: the hub's list
   * answering the client's own request after each (re)join, with the
   * room's join/leave events applied since. While disconnected it is the
   * list before the connection was lost. Empty for a room not joined (or
   * left, or whose join the hub refused), until the hub's first answer or
   * event after `joinRoom`, and always with `keepMembers: false`.
   */
  members(room: string): readonly string[] {
    const view = this.keepMembers ? this.rooms.get(room) : undefined;
    return view === undefined ? [] : [...view.members];
  }

  /**
   * Asks for a room's members; the answer arrives as a `presence` event.
   * Asked while disconnected, it waits in the queue like a publish (it was
   * dropped silently before: no answer ever came).
   */
  presence(room: string): void {
    checkName('presence', 'room', room);
    this.enqueue(envelope({ type: 'presence', data: this.codec.encodeRoomRequest({ roomId: room }) }));
  }

  /**
   * Sends `data` to `channel`'s subscribers; queued while disconnected.
   * Returns false when it is not sent and will not be: refused by the
   * queue's bounds (reported as an `error` event HYP_E_WS_QUEUE_FULL), or
   * `volatile` and unable to go now (not reported).
   */
  publish(channel: string, data: Payload, options: SendOptions = {}): boolean {
    checkName('publish', 'channel', channel);
    return this.enqueue(
      {
        type: 'publish',
        channel,
        data: toData(data),
        timestamp: 0n,
        clientId: '',
        offset: '',
      },
      options.volatile === true,
    );
  }

  /**
   * Publishes and resolves once the hub has accepted the message (in the
   * channel's history or on the bus: losing the connection no longer loses
   * it), with its offset. Sent again with the same id after each reconnect
   * until acknowledged (at least once: subscribers may see it twice and
   * dedupe by (client id, `m.id`)). Rejects with a PublishAckError: the
   * hub's refusal, HYP_E_WS_ACK_TIMEOUT, HYP_E_WS_ACK_CLOSED, or
   * HYP_E_WS_QUEUE_FULL when `maxQueued` / `maxQueuedBytes` acknowledged
   * publishes already wait (one is always admitted).
   */
  publishAck(channel: string, data: Payload, options: PublishAckOptions = {}): Promise<PublishAck> {
    checkName('publishAck', 'channel', channel);
    return this.sendAcked('publish', channel, data, options);
  }

  /** A broadcast acknowledged as `publishAck` is; resolves with offset ''. */
  broadcastAck(data: Payload, options: PublishAckOptions = {}): Promise<PublishAck> {
    return this.sendAcked('broadcast', '', data, options);
  }

  private sendAcked(
    type: 'publish' | 'broadcast',
    channel: string,
    data: Payload,
    options: PublishAckOptions,
  ): Promise<PublishAck> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > maxTimerMs) {
      throw new RangeError(`timeoutMs must be an integer from 1 to ${maxTimerMs}, got ${timeoutMs}`);
    }
    const id = options.id ?? `${this.idPrefix}.${++this.publishCount}`;
    if (typeof id !== 'string') throw new TypeError(`id must be a string, got ${typeof id}`);
    const problem = publishIdProblem(id);
    if (problem !== undefined) throw new RangeError(`invalid publish id: it ${problem}`);
    if (this.acks.has(id))
      throw new RangeError(`publish id ${id} is already waiting for its acknowledgement`);
    // kept until acknowledged, to be sent again: the caller may reuse its buffer once this returns
    const m = envelope({ type, channel, data: toData(data).slice(), id });
    const size = queuedSize(m) + id.length;
    return new Promise<PublishAck>((resolve, reject) => {
      if (this.down !== undefined) {
        reject(this.ackError('HYP_E_WS_ACK_CLOSED', m, `not sent: ${this.down}; connect() first`));
        return;
      }
      if (
        this.acks.size > 0 &&
        (this.acks.size >= this.maxQueued || this.acksBytes + size > this.maxQueuedBytes)
      ) {
        const bound =
          this.acks.size >= this.maxQueued
            ? `${this.maxQueued} messages (maxQueued)`
            : `${this.maxQueuedBytes} bytes (maxQueuedBytes)`;
        reject(
          this.ackError(
            'HYP_E_WS_QUEUE_FULL',
            m,
            `not sent: more than ${bound} wait for their acknowledgement`,
          ),
        );
        return;
      }
      const timer = setTimeout(() => {
        this.settleAck(
          id,
          undefined,
          this.ackError(
            'HYP_E_WS_ACK_TIMEOUT',
            m,
            `not acknowledged within ${timeoutMs} ms; the hub may still have accepted it`,
          ),
        );
      }, timeoutMs);
      this.acks.set(id, { message: m, size, resolve, reject, timer });
      this.acksBytes += size;
      try {
        this.enqueue(m);
      } catch (err) {
        // larger than maxSendSize: neither sent nor queued, so never sent again
        if (!(err instanceof MessageTooLargeError)) throw err;
        this.settleAck(
          id,
          undefined,
          this.ackError(err.code, m, `not sent: ${tooLargeDetail(err.size, err.limit)}`),
        );
      }
    });
  }

  /** A PublishAckError for the acknowledged publish `m`: what happened to it, and that the hub may have it. */
  private ackError(code: ErrorCode, m: Envelope, detail: string): PublishAckError {
    const what = m.type === 'broadcast' ? 'broadcast' : `publish on "${m.channel}"`;
    return new PublishAckError(code, `${what} (id ${m.id}) ${detail}`, m.channel, m.id ?? '');
  }

  /** Resolves (`ack`) or rejects (`err`) acknowledged publish `id`, once; false when it no longer waits. */
  private settleAck(id: string, ack: PublishAck | undefined, err?: PublishAckError): boolean {
    const entry = this.acks.get(id);
    if (entry === undefined) return false;
    this.acks.delete(id);
    this.acksBytes -= entry.size;
    clearTimeout(entry.timer);
    if (err !== undefined) {
      // never sent later: the application was told it failed
      const at = this.queue.indexOf(entry.message);
      if (at >= 0) {
        this.queue.splice(at, 1);
        this.queuedBytes -= queuedSize(entry.message);
      }
      entry.reject(err);
    } else entry.resolve(ack!);
    return true;
  }

  /**
   * The client will not connect again by itself, for `why` (the first reason stands: a close() is
   * followed by its socket's close): every acknowledged publish waiting, and each one until `connect()`,
   * rejects with HYP_E_WS_ACK_CLOSED.
   */
  private stopFor(why: string): void {
    this.down ??= why;
    this.failAcks(this.down);
  }

  /** Rejects every acknowledged publish still waiting. */
  private failAcks(detail: string): void {
    for (const [id, entry] of [...this.acks]) {
      const why = `not acknowledged: ${detail}; the hub may have accepted it`;
      this.settleAck(id, undefined, this.ackError('HYP_E_WS_ACK_CLOSED', entry.message, why));
    }
  }

  /** Sends `data` to every client of the hub; returns as `publish` does. */
  broadcast(data: Payload, options: SendOptions = {}): boolean {
    return this.enqueue(
      {
        type: 'broadcast',
        channel: '',
        data: toData(data),
        timestamp: 0n,
        clientId: '',
        offset: '',
      },
      options.volatile === true,
    );
  }

  /**
   * An application message of any type (reaches the hub's message callbacks); returns as `publish`
   * does. A type the hub takes as a request the client tracks (`join_room`, ...) throws
   * HYP_E_WS_TYPE_RESERVED naming the method to use, and nothing is sent; written as
   * a literal, it does not compile (SendType).
   */
  send<T extends string>(type: SendType<T>, data: Payload, channel = '', options: SendOptions = {}): boolean {
    checkType('send', type);
    // '' is no channel, but a publish needs one
    if (channel !== '' || type === 'publish') checkName('send', 'channel', channel);
    return this.enqueue(
      { type, channel, data: toData(data), timestamp: 0n, clientId: '', offset: '' },
      options.volatile === true,
    );
  }

  /**
   * Closes for good (no reconnect). A `code` other than 1000 or 3000–4999,
   * or a `reason` over 123 bytes of UTF-8 — what a browser's WebSocket
   * refuses — throws a RangeError before anything changes: the client stays
   * as it was, connected and reconnecting.
   */
  close(code = 1000, reason = ''): void {
    if (!(code === 1000 || (Number.isInteger(code) && code >= 3000 && code <= 4999))) {
      throw new RangeError(`close code must be 1000 or 3000–4999 (what every WebSocket takes), got ${code}`);
    }
    const reasonBytes = utf8Encoder.encode(String(reason)).length;
    if (reasonBytes > 123) {
      throw new RangeError(`close reason must be at most 123 bytes of UTF-8, got ${reasonBytes}`);
    }
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const channel of [...this.busyRetries.keys()]) this.stopBusyRetry(channel, true);
    this.settleFirstOpen('connection closed before opening (close() called)');
    this.stopFor('close() was called');
    this.socket?.close(code, reason);
  }

  private settleFirstOpen(reason: string): void {
    this.firstOpen?.reject(new Error(reason));
    this.firstOpen = undefined;
  }

  private open(): void {
    const protocols = this.codec.name === 'json' ? [] : [this.codec.name];
    // the third argument is `ws`'s options (Node); browser sockets ignore it
    const ctor = this.ctor as unknown as new (
      url: string,
      protocols: string[],
      options: { maxPayload: number },
    ) => SocketLike;
    const socket = new ctor(this.url, protocols, { maxPayload: this.maxMessageSize });
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    this.largestSent = undefined;
    // what the lost connection was asked is never answered on this one
    this.roomAsks.clear();
    /** Set when `ws` closed for a message over maxPayload: it sends 1009 but reports 1006 (no echo read). */
    let tooLarge = false;
    let opened = false;
    /** What is known of a failure before opening: the server's answer (`ws`), else the error event's message. */
    let failure: ConnectErrorEvent | undefined;
    watchHandshake(socket, (found) => {
      failure = found;
    });
    socket.onopen = () => {
      opened = true;
      this.opened(socket);
    };
    socket.onmessage = (event) => this.received(socket, event.data);
    socket.onerror = (event) => {
      if (!opened) {
        failure ??= { message: errorMessage(event) ?? unknownFailure };
        return;
      }
      if (socket !== this.socket || (event as { error?: { code?: unknown } })?.error?.code !== wsTooLarge)
        return;
      tooLarge = true;
      this.emit('error', {
        code: 'HYP_E_WS_TOO_LARGE',
        message: `incoming message exceeds ${this.maxMessageSize} bytes (maxMessageSize); connection closed with 1009`,
      });
    };
    socket.onclose = (event) => {
      // an attempt that never opened, unless close() ended it: say what is known before its close
      if (!opened && socket === this.socket && !this.stopped)
        this.emit('connect_error', failure ?? { message: unknownFailure });
      if (tooLarge) {
        this.closed(socket, 1009, 'message too large');
        return;
      }
      // the hub refused a frame of ours as too large
      if (event.code === 1009 && socket === this.socket) this.refusedTooLarge();
      this.closed(socket, event.code, event.reason);
    };
  }

  private opened(socket: SocketLike): void {
    if (socket !== this.socket) return;
    // the backoff resets only once this connection proves stable (see closed())
    this.openedAt = performance.now();
    // resubscribe from the last offsets, rejoin rooms, then flush what queued up
    const skipped: string[] = [];
    for (const [channel, last] of this.channels) {
      const offset = last || this.gapFrom.get(channel) || '';
      if (!offset && this.unacked.has(channel)) skipped.push(channel);
      this.subscribeNow(channel, offset, true);
    }
    for (const [room, view] of this.rooms) this.joinNow(room, view, true);
    const queued = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    // acknowledged publishes sent on a lost connection and never acknowledged go again, with their ids,
    // before what was queued meanwhile (published after they were)
    if (this.acks.size > 0) {
      const waiting = new Set(queued);
      for (const entry of [...this.acks.values()]) if (!waiting.has(entry.message)) this.flush(entry.message);
    }
    // admitted by the queue's bounds already: none is refused by the seal chain's
    for (const m of queued) this.flush(m);
    this.emit('open');
    // a head subscription the hub may have started on the lost connection, never acknowledged: it starts
    // at the head again, and what was published in between is not replayed (no offset to resume from)
    for (const channel of skipped) {
      if (!this.channels.has(channel)) continue; // unsubscribed by an open listener
      this.emit('error', {
        code: 'HYP_E_WS_RECOVERY_FAILED',
        message: `channel ${channel}: the connection closed before the hub acknowledged the subscription; it starts again at the head, and messages published in between may have been missed`,
        channel,
      });
    }
    this.firstOpen?.resolve();
    this.firstOpen = undefined;
  }

  /** Sends a message admitted earlier (queued, or acknowledged and sent again). */
  private flush(m: Envelope): void {
    const over = this.sendNow(m, { queueable: true, bounded: false });
    if (typeof over !== 'number') return;
    // measured when admitted; only a frame that grew since (a longer timestamp) can get here
    const err = this.tooLarge(m, over);
    if (m.id)
      this.settleAck(
        m.id,
        undefined,
        this.ackError(err.code, m, `not sent: ${tooLargeDetail(over, err.limit)}`),
      );
    else
      this.emit('error', {
        code: err.code,
        message: err.message,
        ...(m.channel ? { channel: m.channel } : {}),
      });
  }

  private closed(socket: SocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    // a connection that died at once (a server accepting then closing) counts as a failed attempt
    if (this.openedAt !== undefined && performance.now() - this.openedAt >= stableAfterMs) this.attempt = 0;
    this.openedAt = undefined;
    this.emit('close', code, reason);
    // a newer connection with our client id replaced this one: reconnecting would replace it in turn, forever
    if (code === replacedCode) this.stopped = true;
    if (this.stopped || !this.reconnect.enabled) {
      this.settleFirstOpen(`connection closed before opening (${code})`);
      this.stopFor(
        code === replacedCode
          ? 'the connection was replaced by a newer one with the same client id (4000)'
          : `the connection closed (${code}) and reconnecting is disabled`,
      );
      return;
    }
    if (this.attempt >= this.reconnect.maxAttempts) {
      this.firstOpen?.reject(new Error(`gave up after ${this.attempt} attempts`));
      this.firstOpen = undefined;
      this.stopFor(`the client gave up reconnecting after ${this.attempt} attempts (maxAttempts)`);
      return;
    }
    const hint = drainHint(code, reason);
    const ceiling = Math.min(this.reconnect.maxDelayMs, this.reconnect.initialDelayMs * 2 ** this.attempt);
    // full jitter: uniform in [0, ceiling]; a draining server's hint comes on top
    const delay = Math.min(maxTimerMs, Math.round(Math.random() * ceiling + (hint ?? 0)));
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      // after a backlog close, frames still waiting are opened first: reconnecting sooner would overflow
      // again at once, and resubscribing after them resumes from the latest offset (usually at once: idle)
      void this.inbound.then(() => {
        if (!this.stopped && !this.socket && !this.timer) this.open();
      });
    }, delay);
    this.emit('reconnecting', this.attempt, delay);
  }

  private received(socket: SocketLike, data: unknown): void {
    const bytes =
      typeof data === 'string'
        ? utf8Encoder.encode(data)
        : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : data instanceof Uint8Array
            ? data
            : emptyBytes;
    // `ws` enforces this itself (maxPayload); a browser socket cannot, so the message is dropped here
    if (bytes.length > this.maxMessageSize) {
      this.emit('error', {
        code: 'HYP_E_WS_TOO_LARGE',
        message: `incoming message of ${bytes.length} bytes exceeds ${this.maxMessageSize} bytes (maxMessageSize); dropped`,
      });
      return;
    }
    // frames arriving faster than WebCrypto opens them: close rather than grow without bound
    // (one frame is always admitted, so a bound below one message cannot wedge the connection)
    if (
      this.pendingMessages > 0 &&
      (this.pendingMessages >= this.maxPendingMessages ||
        this.pendingBytes + bytes.length > this.maxPendingBytes)
    ) {
      this.overflowed(socket);
      return;
    }
    this.pendingMessages++;
    this.pendingBytes += bytes.length;
    // decryption is asynchronous: chain so messages keep their order
    this.inbound = this.inbound.then(async () => {
      let m: Envelope;
      try {
        if (!this.replayGuard)
          m = this.codec.unmarshal(this.security ? await this.security.open(bytes) : bytes);
        else {
          const opened = await this.security!.openFrame(bytes);
          m = this.codec.unmarshal(opened.payload);
          // a channel delivery is guarded by its offset (a replayed one is not after the last seen);
          // its timestamp is its publish time, which a resume from history may show long past
          if (!(m.type === 'message' && m.channel && m.offset))
            this.replayGuard.check(opened.nonce, m.timestamp);
        }
      } catch (err) {
        const e = err as { code?: string; message?: string };
        this.emit('error', {
          code: (e.code ?? 'HYP_E_WS_DECODE') as OtherErrorFrame['code'],
          message: e.message ?? String(err),
        });
        return;
      } finally {
        this.pendingMessages--;
        this.pendingBytes -= bytes.length;
      }
      this.dispatch(m);
    });
  }

  /**
   * Closes a connection whose incoming frames outran their opening. Frames
   * already waiting are still opened and dispatched in order; this one and
   * every later one from this socket are dropped. The reconnect resubscribes
   * each channel from the last offset dispatched when it opens, and channel
   * deliveries replayed twice (the backlog still draining) are dropped by
   * offset, so channel deliveries are not lost (within the hub's history).
   * Messages without an offset (broadcasts, rooms, direct sends, presence)
   * dropped here are lost, as on any disconnect.
   */
  private overflowed(socket: SocketLike): void {
    socket.onmessage = null;
    const bound =
      this.pendingMessages >= this.maxPendingMessages
        ? `${this.maxPendingMessages} frames (maxPendingMessages)`
        : `${this.maxPendingBytes} bytes (maxPendingBytes)`;
    this.emit('error', {
      code: 'HYP_E_WS_BACKLOG',
      message: `more than ${bound} incoming frames waiting to be opened; connection closed (${backlogCode}) to resume`,
    });
    socket.close(backlogCode, 'inbound backlog exceeded');
  }

  private dispatch(m: Envelope): void {
    switch (m.type) {
      case 'published':
        // an acknowledgement of a publish that timed out, or of a second copy, finds nothing: fine
        if (m.id) this.settleAck(m.id, { offset: m.offset });
        return;
      case 'subscribed':
        // the ack names the head when subscribing; deliveries already seen are at least as recent
        if (this.channels.get(m.channel) === '' && m.offset) {
          this.channels.set(m.channel, m.offset);
          this.gapFrom.delete(m.channel);
        }
        this.unacked.delete(m.channel);
        this.stopBusyRetry(m.channel, true);
        return;
      case 'error': {
        let body: HypErrorFrame | undefined;
        try {
          body = JSON.parse(utf8Decoder.decode(m.data)) as HypErrorFrame;
        } catch {
          body = undefined;
        }
        // anything but an object (null, a number) would throw below and stall every later frame
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          body = { code: 'HYP_E_WS_DECODE', message: 'unreadable error frame' };
        }
        // the refusal of an acknowledged publish rejects that publish (its `error` event is the rejection)
        const refused = m.id ? this.acks.get(m.id) : undefined;
        if (refused !== undefined) {
          const err = new PublishAckError(
            String(body.code) as ErrorCode,
            String(body.message),
            refused.message.channel,
            m.id!,
          );
          this.settleAck(m.id!, undefined, err);
          return;
        }
        // the old offset no longer orders deliveries (the ack that follows gives the new resume point),
        // but it is where a reconnect before that ack resumes from: the hub then reports the loss again
        const last = body.channel === undefined ? undefined : this.channels.get(body.channel);
        if (body.code === 'HYP_E_WS_RECOVERY_FAILED' && last !== undefined) {
          if (last) this.gapFrom.set(body.channel!, last);
          this.channels.set(body.channel!, '');
        }
        // a refused subscribe never started: a reconnect before its ack has nothing it may have skipped
        if (refusedSubscribe.has(body.code) && typeof body.channel === 'string')
          this.unacked.delete(body.channel);
        if (body.code === 'HYP_E_WS_RECOVERY_BUSY' && typeof body.channel === 'string')
          this.retryBusy(body.channel);
        if (typeof body.room_id === 'string' && !this.roomRefused(body.room_id, body.code, body.request))
          return;
        this.emit('error', body);
        return;
      }
      case 'presence':
        this.presenceFrame(m);
        return;
    }
    if (m.channel && m.offset && this.channels.has(m.channel)) {
      // a repeated or older offset of the same history was delivered already (or is a replay): never twice
      if (!isAfter(m.offset, this.channels.get(m.channel)!)) return;
      this.channels.set(m.channel, m.offset);
      this.gapFrom.delete(m.channel);
      this.unacked.delete(m.channel);
    }
    const msg = message(m);
    const handlers = m.channel ? this.channelHandlers.get(m.channel) : undefined;
    if (handlers) for (const h of handlers) this.guard(() => h(msg));
    this.emit('message', msg);
  }

  /**
   * Sends a join of `room` and, right behind it, the client's own request for its member list, if
   * connected (`force`: opening). The hub answers one connection's requests in order: that answer
   * is the list as of the join, and every event after it is news.
   */
  private joinNow(room: string, view: RoomView, force = false): void {
    if (!this.socket || (this.socket.readyState !== OPEN && !force)) return;
    const data = this.codec.encodeRoomRequest({ roomId: room });
    if (!this.keepMembers) {
      this.sendNow({ type: 'join_room', data }, { force });
      return;
    }
    const join: JoinAsk = { kind: 'join', view, refused: false };
    this.sendNow({ type: 'join_room', data }, { force, ask: { room, ask: join } });
    this.sendNow({ type: 'presence', data }, { force, ask: { room, ask: { kind: 'own', view, join } } });
  }

  /** The room an application's member-list request names (none when the data does not parse: refused). */
  private appAsk(data: Uint8Array): { room: string; ask: RoomAsk } | undefined {
    try {
      return { room: this.codec.decodeRoomRequest(data, 'presence').roomId, ask: { kind: 'app' } };
    } catch {
      return undefined;
    }
  }

  private expectAnswer(room: string, ask: RoomAsk): void {
    const asks = this.roomAsks.get(room);
    if (asks === undefined) this.roomAsks.set(room, [ask]);
    else asks.push(ask);
  }

  private forgetAsk(room: string, ask: RoomAsk): void {
    const asks = this.roomAsks.get(room);
    const at = asks?.indexOf(ask) ?? -1;
    if (at >= 0) asks!.splice(at, 1);
    if (asks?.length === 0) this.roomAsks.delete(room);
  }

  /**
   * A `presence` frame: a member list answering a request, or a join/leave event. In a room the
   * client joined, an event that changes nothing in its list (a join of a listed member: its own
   * join again after a reconnect) is dropped; the others update the list and reach the application.
   */
  private presenceFrame(m: Envelope): void {
    let body: unknown;
    try {
      body = JSON.parse(utf8Decoder.decode(m.data));
    } catch {
      body = undefined;
    }
    const fields = (typeof body === 'object' && body !== null ? body : {}) as {
      room_id?: unknown;
      members?: unknown;
      event?: unknown;
      client_id?: unknown;
    };
    const room = typeof fields.room_id === 'string' ? fields.room_id : m.channel;
    if (Array.isArray(fields.members)) {
      const list = fields.members.filter((id): id is string => typeof id === 'string');
      this.answered(room, list, m);
      return;
    }
    const view = this.keepMembers ? this.rooms.get(room) : undefined;
    const id = fields.client_id;
    if (view !== undefined && typeof id === 'string') {
      if (fields.event === 'join') {
        if (view.members.has(id)) return;
        view.members.add(id);
      } else if (fields.event === 'leave') {
        if (!view.members.has(id)) return;
        view.members.delete(id);
      }
    }
    this.emit('presence', message(m));
  }

  /**
   * A member list from the hub. The answer to the client's own request after a join is the room's
   * list from then on: the differences from the list the client had go out as `presence` events
   * (the changes made while it was disconnected; on a first join, the members already there), and
   * the answer itself is not the application's. An answer to the application's `presence(room)`
   * reaches it as it came, after bringing the list of a room joined on this connection up to date
   * the same way (also when the hub refused the client's own request).
   */
  private answered(room: string, list: string[], m: Envelope): void {
    const asks = this.roomAsks.get(room);
    let ask: RoomAsk | undefined;
    // joins ahead of this answer were accepted: a refusal would have come before it
    while (asks !== undefined && asks.length > 0 && ask === undefined) {
      const head = asks.shift()!;
      if (head.kind === 'join') this.joinAccepted(room, head);
      else ask = head;
    }
    if (asks?.length === 0) this.roomAsks.delete(room);
    const view = this.rooms.get(room);
    // a room left since, or whose join the hub refused on this connection: nothing to keep
    const joined = view !== undefined && this.socket !== undefined && view.joinedOn === this.socket;
    if (ask?.kind === 'own') {
      if (ask.view === view && joined) this.reconcile(room, view, list);
      return;
    }
    if (joined) this.reconcile(room, view, list);
    this.emit('presence', message(m));
  }

  /**
   * An `error` naming `room`: the refusal of a room request. The hub names the request refused
   * (`request`: `join_room`, `presence`, ...), whatever the reason; a hub before it names the room
   * only with the codes of `refusedJoin`, a member-list request only as forbidden (canJoin). False
   * when it is not to be reported: the refusal of the client's own member-list request behind a
   * join refused (and reported) already.
   */
  private roomRefused(room: string, code: string, request: string | undefined): boolean {
    const asks = this.roomAsks.get(room);
    if (asks === undefined) return true;
    let kind = request;
    if (kind === undefined && refusedJoin.has(code)) {
      if (asks[0]?.kind === 'join') kind = 'join_room';
      else if (code === 'HYP_E_WS_FORBIDDEN_CHANNEL') kind = 'presence';
    }
    // joins ahead of a member-list request's refusal were accepted: theirs would have come first
    if (kind === 'presence')
      while (asks[0]?.kind === 'join') this.joinAccepted(room, asks.shift() as JoinAsk);
    const head = asks[0];
    let report = true;
    if (head !== undefined && (kind === 'join_room' || kind === 'presence')) {
      if (kind === 'join_room' && head.kind === 'join') {
        asks.shift();
        this.joinRefused(room, head);
      } else if (kind === 'presence' && head.kind !== 'join') {
        asks.shift();
        report = head.kind === 'app' || !head.join.refused;
      }
    }
    if (asks.length === 0) this.roomAsks.delete(room);
    return report;
  }

  /** The hub accepted a join of `room`: from now on its member-list answers on this connection are the list. */
  private joinAccepted(room: string, ask: JoinAsk): void {
    if (ask.view === this.rooms.get(room)) ask.view.joinedOn = this.socket;
  }

  /**
   * The hub refused a join of `room`: the client is no member on this connection, so its list
   * empties; unless a join before it was accepted there (the hub keeps that membership).
   */
  private joinRefused(room: string, ask: JoinAsk): void {
    ask.refused = true;
    const view = ask.view;
    if (view !== this.rooms.get(room) || view.joinedOn === this.socket) return;
    view.joinedOn = undefined;
    this.reconcile(room, view, []);
  }

  /** Brings `view` to `list`, emitting a `presence` event marked `snapshot` for each difference. */
  private reconcile(room: string, view: RoomView, list: readonly string[]): void {
    const fresh = new Set(list);
    const left = [...view.members].filter((id) => !fresh.has(id));
    const joined = [...fresh].filter((id) => !view.members.has(id));
    for (const [kind, ids] of [
      ['leave', left],
      ['join', joined],
    ] as const) {
      for (const id of ids) {
        // a listener left the room (or joined it anew): this list is no longer the room's
        if (this.rooms.get(room) !== view) return;
        if (kind === 'leave') view.members.delete(id);
        else view.members.add(id);
        const event = { event: kind, room_id: room, client_id: id, snapshot: true };
        this.emit(
          'presence',
          message(
            envelope({
              type: 'presence',
              channel: room,
              clientId: id,
              timestamp: nowNs(),
              data: utf8Encoder.encode(JSON.stringify(event)),
            }),
          ),
        );
      }
    }
  }

  /** The hub refused to resume `channel` now: ask again later, while still subscribed on this connection. */
  private retryBusy(channel: string): void {
    if (!this.channels.has(channel)) return;
    const attempt = (this.busyRetries.get(channel)?.attempt ?? 0) + 1;
    this.stopBusyRetry(channel, false);
    const socket = this.socket;
    const timer = setTimeout(
      () => {
        const offset = this.channels.get(channel);
        if (this.socket !== socket || offset === undefined) {
          this.busyRetries.delete(channel);
          return;
        }
        this.subscribeNow(channel, offset);
      },
      Math.min(5000, 100 * 2 ** Math.min(attempt - 1, 6)),
    );
    this.busyRetries.set(channel, { timer, attempt });
  }

  /** `forget`: also the attempt count (acknowledged, left, or a new connection). */
  private stopBusyRetry(channel: string, forget: boolean): void {
    const retry = this.busyRetries.get(channel);
    if (retry === undefined) return;
    clearTimeout(retry.timer);
    if (forget) this.busyRetries.delete(channel);
  }

  /** Sends a subscribe for `channel` from `offset` ('' = the head) if connected (`force`: opening). */
  private subscribeNow(channel: string, offset: string, force = false): void {
    if (!this.socket || (this.socket.readyState !== OPEN && !force)) return;
    if (!offset) this.unacked.add(channel);
    this.sendNow(
      { type: 'subscribe', data: this.codec.encodeChannelRequest({ channel, offset }) },
      { force },
    );
  }

  /**
   * Sends or queues an application message; false when it is not sent and
   * will not be (refused and reported, or `volatile` and dropped). Throws a
   * MessageTooLargeError (nothing sent or queued) for one whose frame
   * exceeds `maxSendSize`.
   */
  private enqueue(m: Envelope, volatile = false): boolean {
    if (this.connected) {
      const sent = this.sendNow(m, { queueable: true, volatile });
      if (typeof sent === 'number') throw this.tooLarge(m, sent);
      return sent;
    }
    // measured as it will go out: with a timestamp (taken when sent), sealed when security is on
    const wire = this.wireSize(this.codec.marshal({ ...m, timestamp: m.timestamp || nowNs() }).length);
    if (wire > this.maxSendSize) throw this.tooLarge(m, wire);
    // it cannot go now: dropped, never queued
    if (volatile) return false;
    const size = queuedSize(m);
    // larger than the whole bound: dropping every older message would not make room for it
    if (size > this.maxQueuedBytes) {
      this.queueFull(m, `it alone is larger than ${this.maxQueuedBytes} bytes (maxQueuedBytes)`);
      return false;
    }
    // the caller may reuse its buffer once publish() returns (as WebSocket.send allows): keep a copy
    m.data = m.data.slice();
    this.queue.push(m);
    this.queuedBytes += size;
    while (this.queue.length > this.maxQueued || this.queuedBytes > this.maxQueuedBytes) {
      const bound =
        this.queue.length > this.maxQueued
          ? `${this.maxQueued} messages (maxQueued)`
          : `${this.maxQueuedBytes} bytes (maxQueuedBytes)`;
      const dropped = this.queue.shift()!;
      this.queuedBytes -= queuedSize(dropped);
      this.queueFull(dropped, `more than ${bound} queued while disconnected`);
    }
    // the oldest go first: this one, the newest, went only if every other did
    return this.queue.length > 0;
  }

  /** The bytes a frame of `length` bytes takes on the wire: sealed when security is on. */
  private wireSize(length: number): number {
    return this.security ? this.security.sealedLength(length) : length;
  }

  private tooLarge(m: Envelope, size: number): MessageTooLargeError {
    const what = m.channel ? `${m.type} on "${m.channel}"` : m.type;
    return new MessageTooLargeError(
      `${what} not sent: ${tooLargeDetail(size, this.maxSendSize)}`,
      m.channel,
      size,
      this.maxSendSize,
    );
  }

  /**
   * The hub closed the connection with 1009: the largest frame sent on it is the one over its
   * max_message_size (below maxSendSize). An acknowledged publish rejects (sending it again at the
   * reconnect would be refused again, until its timeout); a plain one is reported, lost.
   */
  private refusedTooLarge(): void {
    const largest = this.largestSent;
    this.largestSent = undefined;
    if (largest === undefined) return;
    const m = largest.message;
    const detail = `the hub closed the connection with 1009 (message too big) after its frame of ${largest.size} bytes, the largest sent on it: the hub's websocket.max_message_size is below maxSendSize (${this.maxSendSize} bytes)`;
    if (m.id) {
      // acknowledged already: not the one refused (a 1009 for another cause); rejected already: told once
      if (this.acks.has(m.id))
        this.settleAck(
          m.id,
          undefined,
          this.ackError('HYP_E_WS_TOO_LARGE', m, `not acknowledged: ${detail}`),
        );
      return;
    }
    const report: HypErrorFrame = {
      code: 'HYP_E_WS_TOO_LARGE',
      message: `outgoing ${m.type} message lost: ${detail}`,
    };
    if (m.channel) report.channel = m.channel;
    this.emit('error', report);
  }

  private queueFull(dropped: Envelope, why: string): void {
    // an acknowledged publish learns it through its promise
    if (dropped.id && this.acks.has(dropped.id)) {
      this.settleAck(dropped.id, undefined, this.ackError('HYP_E_WS_QUEUE_FULL', dropped, `dropped: ${why}`));
      return;
    }
    const report: HypErrorFrame = {
      code: 'HYP_E_WS_QUEUE_FULL',
      message: `outgoing ${dropped.type} message dropped: ${why}`,
    };
    if (dropped.channel) report.channel = dropped.channel;
    this.emit('error', report);
  }

  /**
   * Sends if open; control messages while closed are skipped (replayed on
   * reconnect). A `queueable` one caught by a close while being sealed is
   * reported (HYP_E_WS_SEAL), not sent; one past the seal chain's bounds
   * (unless not `bounded`) is reported (HYP_E_WS_QUEUE_FULL), not sent; a
   * `volatile` one with anything waiting ahead of it is dropped, unreported.
   * Returns true when the frame went to the socket (or the seal chain),
   * false when it did not; for a `queueable` one whose frame exceeds
   * `maxSendSize`, not sent, its size on the wire (the caller reports it).
   */
  private sendNow(fields: Partial<Envelope>, how: SendHow = {}): boolean | number {
    const { force = false, queueable = false, bounded = queueable, volatile = false } = how;
    const socket = this.socket;
    if (!socket || (socket.readyState !== OPEN && !force)) return false;
    // every frame carries a timestamp: hubs with a replay guard require one. It is taken now, when the
    // frame goes out: a publish queued while disconnected would otherwise be refused as stale
    const m = envelope(fields);
    if (m.timestamp === 0n) m.timestamp = nowNs();
    // codecs write into memory of their own: never a SharedArrayBuffer (nor is a sealed frame)
    const bytes = this.codec.marshal(m);
    const wire = queueable ? this.wireSize(bytes.length) : 0;
    if (wire > this.maxSendSize) return wire;
    // Socket.IO's rule: a volatile message goes only when nothing waits to go out before it
    if (volatile && (this.sealingMessages > 0 || (socket.bufferedAmount ?? 0) > 0)) return false;
    // publishing faster than WebCrypto seals, or than the network takes, would grow the seal chain or the
    // socket's send buffer without bound: past the queue's bounds a new application message is refused
    // (never one already waiting: that would reorder; one is always admitted). Control frames are small
    // and replayed from state: always admitted, not counted
    const size = queueable ? queuedSize(m) : 0;
    if (bounded) {
      const sealing = this.sealingMessages;
      const buffered = socket.bufferedAmount ?? 0;
      const bound =
        sealing > 0 && sealing >= this.maxQueued
          ? `${this.maxQueued} messages (maxQueued) waiting to be sealed`
          : (sealing > 0 || buffered > 0) && this.sealingBytes + buffered + size > this.maxQueuedBytes
            ? `${this.maxQueuedBytes} bytes (maxQueuedBytes) waiting to be sealed or sent`
            : undefined;
      if (bound !== undefined) {
        this.queueFull(m, `more than ${bound}`);
        return false;
      }
    }
    // a member-list request (the application's too): its answer is told apart from others by its turn
    const ask = how.ask ?? (queueable && m.type === 'presence' ? this.appAsk(m.data) : undefined);
    if (ask !== undefined) this.expectAnswer(ask.room, ask.ask);
    if (!this.security) {
      socket.send(
        this.codec.frame === 'text' ? utf8Decoder.decode(bytes) : (bytes as Uint8Array<ArrayBuffer>),
      );
      if (wire > (this.largestSent?.size ?? 0)) this.largestSent = { size: wire, message: m };
      return true;
    }
    const security = this.security;
    const counted = queueable ? 1 : 0;
    this.sealingMessages += counted;
    this.sealingBytes += size;
    // the chain keeps frames in order; it never rejects, so one failed frame does not stop the ones after it
    this.outbound = this.outbound.then(async () => {
      try {
        const sealed = await security.seal(bytes);
        if (socket.readyState === OPEN) {
          socket.send(sealed as Uint8Array<ArrayBuffer>);
          if (socket === this.socket && wire > (this.largestSent?.size ?? 0))
            this.largestSent = { size: wire, message: m };
        } else if (m.id) {
          // an acknowledged publish is sent again at the reconnect, in its place (before the queue),
          // or its promise has told the application already (a timeout, close()): not reported twice
        } else if (queueable && !volatile) {
          // Re-queueing it here could overtake frames flushed at a reconnect: report it instead.
          const report: HypErrorFrame = {
            code: 'HYP_E_WS_SEAL',
            message: `outgoing ${m.type} message not sent: the connection closed while it was being sealed`,
          };
          if (m.channel) report.channel = m.channel;
          this.emit('error', report);
        }
      } catch (err) {
        // never sent: never answered
        if (ask !== undefined) this.forgetAsk(ask.room, ask.ask);
        const detail = err instanceof Error ? err.message : String(err);
        // an acknowledged publish reports through its promise, once (settled already: nothing more)
        if (m.id) {
          this.settleAck(m.id, undefined, this.ackError('HYP_E_WS_SEAL', m, `cannot be sealed: ${detail}`));
          return;
        }
        const report: HypErrorFrame = {
          code: 'HYP_E_WS_SEAL',
          message: `cannot seal outgoing ${m.type} message: ${detail}`,
        };
        if (m.channel) report.channel = m.channel;
        this.emit('error', report);
      } finally {
        this.sealingMessages -= counted;
        this.sealingBytes -= size;
      }
    });
    return true;
  }

  private emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    for (const l of this.listeners[event]) {
      this.guard(() => (l as (...a: Parameters<Events[K]>) => void)(...args));
    }
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}
