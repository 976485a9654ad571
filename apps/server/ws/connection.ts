import type { WebSocket } from 'ws';
import type { Backlog } from './backlog.js';
import type { Codec, CodecName } from './codecs/index.js';
import type { Envelope } from './envelope.js';
import type { KeySet } from './security.js';

/** What the hub needs from its owner to act for one connection. */
export interface ConnectionOwner {
  sendTo(connection: Connection, message: Envelope): void;
  close(connection: Connection, code: number, reason: string): void;
  /** A frame arrived on the socket. */
  receive(connection: Connection, data: Buffer): void;
  /** The socket closed. */
  remove(connection: Connection, code: number): void;
  /** Checks per-client keys before they are used; throws HYP_E_WS_KEY naming the client. */
  clientKeys(clientId: string, keys: KeySet): KeySet;
}

/**
 * One connected client as the application sees it. Kept small: an idle
 * connection costs the `ws` socket plus this object; sets and maps are
 * created on first use.
 */
/** A frame in a connection's claims: waiting for its verdict, or decided and waiting behind older ones. */
export interface ClaimedFrame {
  message?: Envelope;
  /** A frame refused before any claim (undecodable, this hub's replay guard): in order too. */
  error?: unknown;
  /** undefined: waiting; '': granted; else why it is refused. */
  verdict: string | undefined;
  /** Read before the connection closed. */
  readWhileOpen: boolean;
}

export class Connection {
  /**
   * Channels and rooms as small arrays: a client has a handful, and a Set
   * costs ~10× an array per connection. Membership tests go to the hub's
   * per-channel/room Sets instead (O(1)); the hub bounds the total
   * (`maxSubscriptions`).
   */
  channels: string[] | undefined;
  rooms: string[] | undefined;
  metadata: Map<string, unknown> | undefined;
  /**
   * Channels whose shared-history replay is under way → live deliveries held back meanwhile;
   * `resuming`: one of the replays under way is a resume from an offset (at most one is);
   * `heldBytes`: about the bytes held on the wire, counted with the socket's buffered bytes against `sendBufferLimit`.
   */
  recovering:
    | Map<string, { held: Envelope[]; heldBytes: number; pending: number; resuming: boolean }>
    | undefined;
  /** Channels just recovered → last replayed offset: announcements arriving late at or before it are already sent. */
  replayedUpTo: Map<string, string> | undefined;
  /** Frames waiting for the socket to drain while a replay from history goes out (see Backlog). */
  backlog: Backlog | undefined;
  /** Per-client keys set after authorization; override the hub's. */
  keys: KeySet | undefined;
  failures = 0;
  /** Hub clock (ms since the hub started) of the last ping, or of the connect. */
  pingAt = 0;
  awaitingPong = false;
  open = true;
  /** Not read from until the bus or the shared history drains (hub.holdWhileCongested). */
  held = false;
  /**
   * Frames `ws` still emitted while `held`: the rest of the socket reads it
   * had already taken when paused (up to about 64 KiB each). They wait, in
   * order, and are handled once the hold ends.
   */
  inbox: Buffer[] | undefined = undefined;
  /** Bytes in `inbox`. */
  inboxBytes = 0;
  /** Frames waiting, in order, for the replay check beyond this hub (hub.ts claim). */
  claims: ClaimedFrame[] | undefined = undefined;

  constructor(
    readonly id: string,
    readonly codec: Codec,
    readonly ws: WebSocket,
    /** @internal the hub this connection belongs to */
    readonly owner: ConnectionOwner,
  ) {}

  get remoteAddress(): string {
    return (this.ws as unknown as { _socket?: { remoteAddress?: string } })._socket?.remoteAddress ?? '';
  }

  get codecName(): CodecName {
    return this.codec.name;
  }

  get(key: string): unknown {
    return this.metadata?.get(key);
  }

  set(key: string, value: unknown): this {
    this.metadata ??= new Map();
    this.metadata.set(key, value);
    return this;
  }

  /**
   * Per-client AES/HMAC keys (HypGo's SetEncryptionKey/SetHMACKey); `undefined` reverts to the hub's.
   * Fails closed: a key set without any key, or keys on a hub without the security pipeline, throw
   * HYP_E_WS_KEY naming the client and leave the keys as they were.
   */
  setKeys(keys: KeySet | undefined): this {
    this.keys = keys === undefined ? undefined : this.owner.clientKeys(this.id, keys);
    return this;
  }

  /** @internal the hub has checked that `name` is not in the list (its index Sets answer in O(1)) */
  addTo(list: 'channels' | 'rooms', name: string): void {
    const names = this[list];
    if (!names) this[list] = [name];
    else names.push(name);
  }

  /** @internal */
  removeFrom(list: 'channels' | 'rooms', name: string): void {
    const names = this[list];
    const i = names ? names.indexOf(name) : -1;
    if (i >= 0) names!.splice(i, 1);
  }

  send(message: Envelope): void {
    this.owner.sendTo(this, message);
  }

  close(code = 1000, reason = ''): void {
    this.owner.close(this, code, reason);
  }
}
