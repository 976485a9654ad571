import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type WebSocket, WebSocketServer } from 'ws';
import { HypError, isHypError } from '../../../supervisor/errors.js';
import { destroySocket, refuseUpgrade } from '../http/upgrade.js';
import { Backlog } from './backlog.js';
import { type Bus, type BusOutcome, LocalBus } from './bus.js';
import {
  type BusEvent,
  type BusEventKind,
  decodeAlive,
  decodeBusEvent,
  decodeMembersChunk,
  encodeAlive,
  encodeBusEvent,
  encodeMembersChunk,
} from './bus-event.js';
import {
  type CodecName,
  codecByName,
  codecNames,
  jsonCodec,
  negotiate,
  readableFields,
} from './codecs/index.js';
import { checkWellFormedName } from './codecs/surrogates.js';
import { type ClaimedFrame, Connection, type ConnectionOwner } from './connection.js';
import {
  Control,
  errorEnvelope,
  publishedEnvelope,
  type RefusedRoomRequest,
  Reply,
  replyEnvelope,
} from './control.js';
import {
  type Envelope,
  envelope,
  jsonData,
  nowNs,
  ownBytes,
  type Payload,
  publishIdProblem,
} from './envelope.js';
import type { Flow } from './flow.js';
import { CorkBatch, directSocket, framePayload, prepareFrame } from './frame.js';
import { History } from './history.js';
import { type WsMetrics, wsMetricsOn } from './metrics.js';
import type { NonceClaims } from './nonce-claims.js';
import { type Change, type Pair, Peers, Presence } from './presence.js';
import { compareStreamIds, type Gap, type SharedHistory } from './redis-history.js';
import {
  failureReason,
  type KeySet,
  ReplayGuard,
  Security,
  type SecurityOptions,
  validateClientKeys,
} from './security.js';

/**
 * The WebSocket hub: channels, rooms, broadcast and direct sends over `ws`,
 * with four codecs, an optional security pipeline, history and recovery,
 * presence, heartbeat, backpressure, drain, and fan-out to other workers
 * and pods through a Bus.
 *
 * The HTTP layer routes an upgrade here with `hub.handleUpgrade(req,
 * socket, head)`; the hub checks drain state, origin and the authorize hook,
 * negotiates the codec from `Sec-WebSocket-Protocol` and takes the socket.
 *
 * Fan-out serializes a delivery at most once per codec and seals it once
 * per key set, whatever the number of recipients.
 */

export type HubClient = Connection;

/** What `authorize` may return: `false` refuses with 403; an object accepts and sets up the client. */
export interface Authorization {
  clientId?: string;
  metadata?: Record<string, unknown>;
  /**
   * Per-client keys overriding the hub's. Needs the hub's `security` and at
   * least one key: otherwise the upgrade is refused (500, HYP_E_WS_KEY logged).
   */
  keys?: KeySet;
}

export type Authorize = (
  req: IncomingMessage,
) => boolean | undefined | Authorization | Promise<boolean | undefined | Authorization>;

export type { Payload } from './envelope.js';

export interface HubSecurityOptions extends SecurityOptions {
  /** Same as the hub's `maxFailures`, which wins when both are set. */
  maxFailures?: number;
  /** Replay guard window; 0 or absent: off. */
  replayWindowMs?: number;
  replayCacheSize?: number;
  /**
   * Where a frame that passed this hub's replay guard claims its nonce for
   * every node (nonce-claims.ts: the pod's supervisor, or Redis for every
   * pod); the frame is handled once the claim is granted. Absent: this hub's
   * guard only. Used only with `replayWindowMs`.
   */
  replayClaims?: NonceClaims;
}

export interface HubOptions {
  /** Bus topic; hubs on other nodes with the same name exchange messages. Default 'ws'. */
  name?: string;
  codecs?: readonly CodecName[];
  /** Empty: same host only (Origin host equals Host); `'*'`: any origin. Requests without Origin are allowed. */
  allowedOrigins?: readonly string[];
  authorize?: Authorize;
  /**
   * How long an upgrade may wait on an async `authorize` (`websocket.authorize_timeout`);
   * then it is refused with 503 HYP_E_WS_AUTHORIZE_TIMEOUT. 0: no bound. Default 10 s.
   */
  authorizeTimeoutMs?: number;
  /** Larger messages close the connection with 1009. Default 512 KiB. */
  maxMessageSize?: number;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** Per-client buffered bytes before `slowConsumer` applies. Default 1 MiB. */
  sendBufferLimit?: number;
  slowConsumer?: 'close' | 'drop';
  /** Messages kept per channel for recovery. Default 1000. */
  historySize?: number;
  /**
   * Data bytes the in-memory history (no shared history) keeps across all
   * channels (`websocket.history_bytes`); beyond it the oldest messages go
   * first. Default: no byte bound (config default 64 MiB).
   */
  historyBytes?: number;
  /**
   * Channels plus rooms one connection may hold (`websocket.max_subscriptions`);
   * one more is refused with HYP_E_WS_TOO_MANY_SUBSCRIPTIONS. Default 1000.
   */
  maxSubscriptions?: number;
  /**
   * Longest channel or room name a client may subscribe to, join or publish
   * on, in characters; a longer one is refused with HYP_E_WS_NAME_TOO_LONG.
   * Names are kept (subscriptions, presence on every node, the pod-wide
   * history's channel table), so they need a bound of their own below
   * `maxMessageSize`. Default 1024.
   */
  maxNameLength?: number;
  /**
   * Refused frames (undecodable, and with `security`: failing decryption,
   * verification or the replay guard) before the connection is closed with
   * 1008 (`websocket.security.max_failures`). Counted with or without
   * security. Default 5.
   */
  maxFailures?: number;
  compression?: { enabled?: boolean; level?: number; threshold?: number; concurrency?: number };
  security?: HubSecurityOptions;
  bus?: Bus;
  /**
   * Channel history shared across nodes (RedisHistory). With it, channel
   * publishes travel through the shared history instead of the bus and
   * offsets are valid on every node.
   */
  sharedHistory?: SharedHistory;
  /** Close the bus and shared history in `close()` (they were made for this hub). Default false. */
  ownTransports?: boolean;
  registry?: Registry;
  log?: Logger;
  /** May a client publish to / broadcast on this channel? Default: yes. */
  canPublish?: (client: HubClient, channel: string) => boolean;
  /**
   * May a client subscribe to this channel (its `subscribe` control message)?
   * Default: yes. A refusal is an error frame HYP_E_WS_FORBIDDEN_CHANNEL
   * naming the channel; nothing is replayed or delivered.
   */
  canSubscribe?: (client: HubClient, channel: string) => boolean;
  /**
   * May a client join this room, or list its members (`join_room`, `presence`)?
   * Default: yes. A refusal is an error frame HYP_E_WS_FORBIDDEN_CHANNEL naming the room.
   */
  canJoin?: (client: HubClient, room: string) => boolean;
  /** Acknowledge subscribe with a `subscribed` frame carrying the resume offset. Default true. */
  ackSubscribe?: boolean;
  /**
   * Presence upkeep across nodes: a hub holding room members announces them
   * (`alive`, a count and a digest) this often; a node that holds members and
   * misses 3 announcements is dropped (leave events), and a view that differs
   * from an announcement is repaired from a snapshot. 0: off. Default 5 s.
   */
  presenceIntervalMs?: number;
}

export interface DrainOptions {
  /** Close frames are spread uniformly at random over this window. */
  spreadMs: number;
  /** Epoch ms after which the remaining connections are terminated. */
  deadline?: number;
}

/** Callbacks may be async: a throw or a rejection is logged, never left unhandled. */
type ConnectHandler = (client: HubClient, req: IncomingMessage) => void | Promise<void>;
type DisconnectHandler = (client: HubClient, code: number) => void | Promise<void>;
type MessageHandler = (client: HubClient, message: Envelope) => void | Promise<void>;

const codecSlots = 4;
const binaryFrame = { binary: true };
const textFrame = { binary: false };
const maxClientIdLength = 256;
const defaultMaxSubscriptions = 1000;
const defaultMaxNameLength = 1024;
const defaultAuthorizeTimeoutMs = 10_000;
/** What a held client being closed may send before its close frame, at least (else `sendBufferLimit`): more is cut off. */
const maxClosingInbox = 1024 * 1024;
const defaultPresenceIntervalMs = 5_000;
/** (room, client) pairs, and their characters, per `members` snapshot chunk at most. */
const snapshotChunkPairs = 1024;
const snapshotChunkChars = 256 * 1024;
/** The longest delay a Node timer takes (a longer one fires at once). */
const maxTimerMs = 2 ** 31 - 1;
/**
 * Bytes a client may send while its upgrade waits on `authorize` (kept and
 * handed to the connection); more is refused with 400. RFC 6455 4.1: a
 * client waits for the server's answer before sending anything.
 */
const maxEarlyBytes = 64 * 1024;

/** An upgrade waiting on an async `authorize`: `refuse` answers it now, if it still waits. */
type PendingUpgrade = (err: HypError) => void;

function toData(payload: Payload): Uint8Array {
  return payload instanceof Uint8Array ? payload : jsonData(payload);
}

export class Hub implements ConnectionOwner {
  readonly metrics: WsMetrics;
  readonly history: History;
  readonly presence = new Presence();
  readonly bus: Bus;
  private readonly name: string;
  private readonly enabled: readonly CodecName[];
  private readonly wss: WebSocketServer;
  private readonly security: Security | undefined;
  private readonly replay: ReplayGuard | undefined;
  private readonly claims: NonceClaims | undefined;
  /** Connections held (holdWhileCongested) until their flow drains, open or closed since. */
  private readonly holding = new Set<Connection>();
  private readonly maxFailures: number;
  private readonly maxSubscriptions: number;
  private readonly maxNameLength: number;
  private readonly authorizeTimeoutMs: number;
  private readonly pending = new Set<PendingUpgrade>();
  private readonly sendBufferLimit: number;
  private readonly slowConsumer: 'close' | 'drop';
  private readonly pingIntervalMs: number;
  private readonly pongTimeoutMs: number;
  private readonly heartbeat: NodeJS.Timeout | undefined;
  private readonly presenceIntervalMs: number;
  private readonly presenceTimer: NodeJS.Timeout | undefined;
  private readonly peers: Peers;
  private presenceTickAt = 0;
  /** The last `alive` announced members: one more (with none) tells the others they are gone. */
  private announcedMembers = false;
  private snapshots = 0;
  private readonly untrackPresence: () => void;
  private readonly stopBus: () => void;
  private readonly stopShared: () => void;
  private readonly shared: SharedHistory | undefined;
  private readonly corks = new CorkBatch();
  private readonly startedAt = performance.now();
  private readonly all = new Set<Connection>();
  private readonly byId = new Map<string, Connection>();
  private readonly channels = new Map<string, Set<Connection>>();
  private readonly rooms = new Map<string, Set<Connection>>();
  private readonly connectHandlers: ConnectHandler[] = [];
  private readonly disconnectHandlers: DisconnectHandler[] = [];
  private readonly messageHandlers: MessageHandler[] = [];
  /**
   * Acknowledged publishes handed to the shared history, until its delivery
   * (with the offset) comes back: `<client id> NUL <publish id>` → the
   * connection to acknowledge, and per connection the keys it waits for
   * (at most `maxAwaitingAcks`; dropped with the connection).
   */
  private readonly awaitingAck = new Map<string, Connection>();
  private readonly acksOf = new Map<Connection, Set<string>>();
  private draining = false;
  private closed = false;
  /**
   * The app's wait for the congested paths to drain (`whenDrained`): one for every caller, so the
   * hub has one callback on one flow at a time, however many wait.
   */
  private flowWait: { readonly promise: Promise<void>; readonly resolve: () => void } | undefined;
  private drainTimers: NodeJS.Timeout[] = [];

  constructor(private readonly options: HubOptions = {}) {
    this.name = options.name ?? 'ws';
    this.enabled = options.codecs ?? codecNames;
    this.metrics = wsMetricsOn(options.registry);
    this.history = new History({ size: options.historySize ?? 1000, maxBytes: options.historyBytes });
    this.bus = options.bus ?? new LocalBus();
    this.security = options.security ? new Security(options.security) : undefined;
    const window = options.security?.replayWindowMs ?? 0;
    this.replay =
      this.security && window > 0
        ? new ReplayGuard({ windowMs: window, maxEntries: options.security?.replayCacheSize })
        : undefined;
    this.claims = this.replay ? options.security?.replayClaims : undefined;
    this.maxFailures = options.maxFailures ?? options.security?.maxFailures ?? 5;
    if (!Number.isInteger(this.maxFailures) || this.maxFailures < 1) {
      throw new HypError('HYP_E_CONFIG_INVALID', {
        path: 'websocket.security.max_failures (maxFailures)',
        detail: `must be an integer of at least 1, got ${String(this.maxFailures)}`,
      });
    }
    this.maxSubscriptions = options.maxSubscriptions ?? defaultMaxSubscriptions;
    if (!Number.isInteger(this.maxSubscriptions) || this.maxSubscriptions < 1) {
      throw new HypError('HYP_E_CONFIG_INVALID', {
        path: 'websocket.max_subscriptions (maxSubscriptions)',
        detail: `must be an integer of at least 1, got ${String(options.maxSubscriptions)}`,
      });
    }
    this.maxNameLength = options.maxNameLength ?? defaultMaxNameLength;
    if (!Number.isInteger(this.maxNameLength) || this.maxNameLength < 1) {
      throw new HypError('HYP_E_CONFIG_INVALID', {
        path: 'maxNameLength',
        detail: `must be an integer of at least 1, got ${String(options.maxNameLength)}`,
      });
    }
    this.authorizeTimeoutMs = options.authorizeTimeoutMs ?? defaultAuthorizeTimeoutMs;
    if (
      !Number.isInteger(this.authorizeTimeoutMs) ||
      this.authorizeTimeoutMs < 0 ||
      this.authorizeTimeoutMs > maxTimerMs
    ) {
      throw new HypError('HYP_E_CONFIG_INVALID', {
        path: 'websocket.authorize_timeout (authorizeTimeoutMs)',
        detail: `must be an integer number of milliseconds from 0 to ${maxTimerMs}, got ${String(options.authorizeTimeoutMs)}`,
      });
    }
    this.presenceIntervalMs = options.presenceIntervalMs ?? defaultPresenceIntervalMs;
    if (
      !Number.isInteger(this.presenceIntervalMs) ||
      this.presenceIntervalMs < 0 ||
      this.presenceIntervalMs > maxTimerMs
    ) {
      throw new HypError('HYP_E_CONFIG_INVALID', {
        path: 'presenceIntervalMs',
        detail: `must be an integer number of milliseconds from 0 to ${maxTimerMs}, got ${String(options.presenceIntervalMs)}`,
      });
    }
    this.peers = new Peers(this.presenceIntervalMs);
    const presence = this.presence;
    const bus = this.bus;
    this.untrackPresence = this.metrics.trackPresence({
      *peerNodes() {
        for (const node of presence.nodeIds()) if (node !== bus.nodeId) yield node;
      },
      memberships: () => presence.memberships,
    });
    this.sendBufferLimit = options.sendBufferLimit ?? 1024 * 1024;
    this.slowConsumer = options.slowConsumer ?? 'close';
    this.pingIntervalMs = options.pingIntervalMs ?? 25_000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 10_000;
    const compression = options.compression;
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: options.maxMessageSize ?? 512 * 1024,
      perMessageDeflate: compression?.enabled
        ? {
            zlibDeflateOptions: { level: compression.level ?? 1 },
            threshold: compression.threshold ?? 1024,
            concurrencyLimit: compression.concurrency ?? 10,
          }
        : false,
      handleProtocols: (offered) => negotiate(offered, this.enabled)?.name ?? false,
    });
    const tick = Math.max(20, Math.min(this.pingIntervalMs, this.pongTimeoutMs) / 2);
    if (this.pingIntervalMs > 0) {
      this.heartbeat = setInterval(() => this.sweep(), tick);
      this.heartbeat.unref();
    }
    if (this.presenceIntervalMs > 0) {
      this.presenceTimer = setInterval(() => this.presenceTick(), this.presenceIntervalMs);
      this.presenceTimer.unref();
    }
    this.shared = options.sharedHistory;
    const stopDelivery =
      this.shared?.onDelivery((channel, m) => {
        unpackPublishId(m);
        this.deliver(this.channels.get(channel), m, undefined, true);
        if (m.id !== undefined) this.acknowledge(channel, m);
      }) ?? noop;
    const stopGap = this.shared?.onGap?.((gap) => this.sharedGap(gap)) ?? noop;
    this.stopShared = () => {
      stopDelivery();
      stopGap();
    };
    this.stopBus = this.bus.onMessage((topic, payload) => {
      if (topic !== this.name) return;
      const event = decodeBusEvent(payload);
      if (event) this.fromBus(event);
    });
  }

  // ---- callbacks ----

  onConnect(handler: ConnectHandler): this {
    this.connectHandlers.push(handler);
    return this;
  }

  onDisconnect(handler: DisconnectHandler): this {
    this.disconnectHandlers.push(handler);
    return this;
  }

  /** Every decoded, verified message from a client, before the hub acts on control types. */
  onMessage(handler: MessageHandler): this {
    this.messageHandlers.push(handler);
    return this;
  }

  // ---- upgrade ----

  /** Entry point for the HTTP layer: an `upgrade` on the hub's route. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // a module-level listener: a closure here would keep this scope (and the request) alive
    socket.on('error', destroySocket);
    // llhttp also parses `HTTP/2.0` and HTTP/0.9 request lines; a WebSocket handshake needs HTTP/1.1 (RFC 6455 4.1)
    if (req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) {
      refuseUpgrade(
        socket,
        req.httpVersionMajor === 1
          ? new HypError('HYP_E_BAD_REQUEST', { detail: 'a websocket upgrade needs HTTP/1.1' })
          : new HypError('HYP_E_HTTP_VERSION', { version: req.httpVersion }),
      );
      return;
    }
    // A handshake is a GET without a body (RFC 6455 4.1). Node stops parsing at the upgrade, so body
    // bytes would reach `ws` as frames: a 101, then an instant 1002. Refuse before the handshake.
    const length = req.headers['content-length'];
    if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && !/^0+$/.test(length))) {
      refuseUpgrade(
        socket,
        new HypError('HYP_E_BAD_REQUEST', {
          detail:
            'a websocket upgrade request cannot carry a body (Content-Length or Transfer-Encoding); send it without',
        }),
      );
      return;
    }
    if (this.draining || this.closed) {
      refuseUpgrade(socket, new HypError('HYP_E_DRAINING'));
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !this.originAllowed(origin, req.headers.host)) {
      refuseUpgrade(socket, new HypError('HYP_E_WS_ORIGIN', { origin }));
      return;
    }
    const authorize = this.options.authorize;
    if (!authorize) {
      this.upgradeGuarded(req, socket, head, undefined);
      return;
    }
    let verdict: ReturnType<Authorize>;
    try {
      verdict = authorize(req);
    } catch (err) {
      refuseUpgrade(socket, this.authError(err));
      return;
    }
    if (isThenable(verdict)) this.awaitVerdict(req, socket, head, verdict);
    else this.decide(req, socket, head, verdict);
  }

  private decide(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    result: boolean | undefined | Authorization,
  ): void {
    if (result === false) {
      refuseUpgrade(socket, new HypError('HYP_E_WS_FORBIDDEN', { detail: 'authorize hook refused' }));
      return;
    }
    this.upgradeGuarded(req, socket, head, typeof result === 'object' ? result : undefined);
  }

  /**
   * An upgrade waiting on an async `authorize`: bounded by `authorizeTimeoutMs`
   * (503 HYP_E_WS_AUTHORIZE_TIMEOUT), refused at once by a drain or close (503
   * HYP_E_DRAINING), and dropped if the client leaves meanwhile — the socket is
   * read while waiting so that its end is seen; the bytes read (a client should
   * send none before the 101) are kept for the connection. A verdict that comes
   * after any of these is ignored.
   */
  private awaitVerdict(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    verdict: PromiseLike<boolean | undefined | Authorization>,
  ): void {
    const early: Buffer[] = [];
    let earlyBytes = 0;
    let timer: NodeJS.Timeout | undefined;
    const settle = (): boolean => {
      if (!this.pending.delete(refuse)) return false;
      if (timer) clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onGone);
      socket.off('close', onGone);
      return true;
    };
    const refuse: PendingUpgrade = (err) => {
      if (settle()) refuseUpgrade(socket, err);
    };
    const onGone = (): void => {
      if (settle()) socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      early.push(chunk);
      earlyBytes += chunk.length;
      if (earlyBytes > maxEarlyBytes) {
        refuse(
          new HypError('HYP_E_BAD_REQUEST', {
            detail: `more than ${maxEarlyBytes} bytes sent before the websocket handshake completed`,
          }),
        );
      }
    };
    this.pending.add(refuse);
    socket.on('data', onData);
    socket.on('end', onGone);
    socket.on('close', onGone);
    if (this.authorizeTimeoutMs > 0) {
      const timeoutMs = this.authorizeTimeoutMs;
      timer = setTimeout(() => {
        // the path only: browsers send credentials in the query (?token=), which must stay out of logs
        const path = (req.url ?? '/').split('?')[0];
        this.options.log?.warn({ timeoutMs, path }, 'websocket authorize hook timed out');
        refuse(new HypError('HYP_E_WS_AUTHORIZE_TIMEOUT', { timeout: `${timeoutMs}ms` }));
      }, timeoutMs);
      timer.unref();
    }
    verdict.then(
      (result) => {
        if (!settle()) return;
        if (!socket.readable || !socket.writable) {
          socket.destroy();
          return;
        }
        // synchronously from here to `ws` taking the socket: no chunk is emitted in between
        this.decide(req, socket, early.length > 0 ? Buffer.concat([head, ...early]) : head, result);
      },
      (err: unknown) => {
        if (settle()) refuseUpgrade(socket, this.authError(err));
      },
    );
  }

  /** Answers every upgrade still waiting on `authorize` with `err`. */
  private refusePending(err: () => HypError): void {
    for (const refuse of [...this.pending]) refuse(err());
  }

  private authError(err: unknown): HypError {
    if (isHypError(err) && (err.status === 401 || err.status === 403)) return err;
    this.options.log?.warn({ err }, 'websocket authorize hook failed');
    return new HypError('HYP_E_WS_UNAUTHORIZED', {}, { cause: err });
  }

  private originAllowed(origin: string, host: string | undefined): boolean {
    const allowed = this.options.allowedOrigins ?? [];
    if (allowed.includes('*')) return true;
    if (allowed.length > 0) return allowed.includes(origin);
    try {
      return new URL(origin).host === host;
    } catch {
      return false;
    }
  }

  /** `upgrade`, where a throw (say from a malformed authorization) refuses with 500 rather than escaping as an unhandled rejection. */
  private upgradeGuarded(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    auth: Authorization | undefined,
  ): void {
    try {
      this.upgrade(req, socket, head, auth);
    } catch (err) {
      this.options.log?.error({ err }, 'websocket upgrade failed');
      refuseUpgrade(socket, new HypError('HYP_E_INTERNAL', {}, { cause: err }));
    }
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, auth: Authorization | undefined): void {
    if (this.draining || this.closed) {
      refuseUpgrade(socket, new HypError('HYP_E_DRAINING'));
      return;
    }
    const header = req.headers['x-client-id'];
    let id = auth?.clientId ?? (typeof header === 'string' ? header : undefined);
    if (!id) {
      const q = req.url?.indexOf('?') ?? -1;
      if (q >= 0) id = new URLSearchParams(req.url!.slice(q + 1)).get('client_id') ?? undefined;
    }
    id ||= `client-${randomBytes(12).toString('base64url')}`;
    if (typeof id !== 'string') {
      throw new TypeError(`authorize hook returned a clientId that is not a string (${typeof id})`);
    }
    if (id.length > maxClientIdLength) {
      refuseUpgrade(
        socket,
        new HypError('HYP_E_BAD_REQUEST', { detail: `client id longer than ${maxClientIdLength}` }),
      );
      return;
    }
    if (id.includes('\u0000')) {
      refuseUpgrade(
        socket,
        new HypError('HYP_E_BAD_REQUEST', { detail: 'client id contains a NUL character' }),
      );
      return;
    }
    if (auth?.keys) {
      try {
        this.clientKeys(id, auth.keys);
      } catch (err) {
        // fail closed: an empty key set, or keys the hub would ignore, would mean plaintext for this client
        this.options.log?.error({ err, client: id }, 'authorize hook returned unusable keys');
        refuseUpgrade(socket, new HypError('HYP_E_INTERNAL', {}, { cause: err }));
        return;
      }
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      try {
        this.accept(ws, req, id, auth);
      } catch (err) {
        // after the 101: no HTTP answer any more
        this.options.log?.error({ err, client: id }, 'websocket accept failed');
        ws.terminate();
      }
    });
  }

  /**
   * @internal Per-client keys, checked before use (the authorize hook's, or
   * `client.setKeys`): valid, at least one key, and a hub with the security
   * pipeline — without it they would be ignored. Throws HYP_E_WS_KEY naming
   * the client: security fails closed, never silently to plaintext.
   */
  clientKeys(clientId: string, keys: KeySet): KeySet {
    validateClientKeys(keys, clientId);
    if (!this.security) {
      throw new HypError('HYP_E_WS_KEY', {
        key: `set of client ${clientId}`,
        detail:
          "needs the hub's security pipeline (websocket.security keys or the security option); " +
          'without it the keys would be ignored and the client would send and receive plaintext',
      });
    }
    return keys;
  }

  private accept(ws: WebSocket, req: IncomingMessage, id: string, auth: Authorization | undefined): void {
    if (this.closed) {
      ws.terminate();
      return;
    }
    const codec = codecByName(ws.protocol) ?? jsonCodec;
    const c = new Connection(id, codec, ws, this);
    if (auth?.keys) c.keys = auth.keys;
    if (auth?.metadata) for (const [k, v] of Object.entries(auth.metadata)) c.set(k, v);
    const previous = this.byId.get(id);
    this.byId.set(id, c);
    this.all.add(c);
    if (previous) previous.close(4000, 'replaced by a newer connection with the same client id');
    c.pingAt = this.clock();
    this.listen(c);
    this.metrics.connections.inc({ codec: codec.name });
    for (const h of this.connectHandlers) this.guard(() => h(c, req));
  }

  /**
   * Socket listeners are shared module functions (`this` is the socket) that
   * find the connection through one symbol-keyed property: cheaper per
   * connection than closures, and nothing of `accept`'s scope (the upgrade
   * request) stays reachable.
   */
  private listen(c: Connection): void {
    const ws = c.ws as TaggedSocket;
    ws[connectionKey] = c;
    ws.on('message', onSocketMessage);
    ws.on('pong', onSocketPong);
    ws.on('close', onSocketClose);
    ws.on('error', noop);
  }

  // ---- incoming ----

  /** @internal called by the socket listeners */
  receive(c: Connection, data: Buffer, readWhileOpen = false): void {
    if (c.held) {
      // `ws.pause()` stops the socket, not the frames of reads already taken: they wait for the hold to end
      if (c.inbox === undefined) c.inbox = [data];
      else c.inbox.push(data);
      c.inboxBytes += data.length;
      // closing, it is read again (close): one that goes on sending past what it may buffer is cut off
      if (!c.open && c.inboxBytes > Math.max(this.sendBufferLimit, maxClosingInbox)) c.ws.terminate();
      return;
    }
    this.metrics.countIn(c.codec.name, data.length);
    let bytes: Uint8Array = data;
    let nonce: Uint8Array | undefined;
    if (this.security) {
      try {
        const opened = this.security.open(bytes, c.keys);
        bytes = opened.payload;
        nonce = opened.nonce;
      } catch (err) {
        this.refuseInTurn(c, err, readWhileOpen);
        return;
      }
    }
    let message: Envelope;
    try {
      message = c.codec.unmarshal(bytes);
    } catch (err) {
      this.refuseInTurn(c, err, readWhileOpen);
      return;
    }
    if (this.replay && nonce) {
      try {
        this.replay.check(nonce, message.timestamp);
      } catch (err) {
        this.refuseInTurn(c, err, readWhileOpen, message);
        return;
      }
    }
    if (this.claims !== undefined && nonce !== undefined) {
      this.claim(c, message, nonce, data.length, readWhileOpen || c.open);
      return;
    }
    this.accepted(c, message, readWhileOpen);
  }

  /**
   * Claims the nonce of a frame that passed this hub's replay guard for every
   * node (nonce-claims.ts) and handles the frame once granted. Frames wait in
   * order: a later frame (or a refusal) never overtakes one whose verdict
   * has not come. `readWhileOpen`: read before the connection closed.
   */
  private claim(
    c: Connection,
    message: Envelope,
    nonce: Uint8Array,
    bytes: number,
    readWhileOpen: boolean,
  ): void {
    const entry: ClaimedFrame = { message, verdict: undefined, readWhileOpen };
    c.claims ??= [];
    c.claims.push(entry);
    this.claims!.claim(nonce, message.timestamp, bytes, (verdict) => {
      entry.verdict = verdict;
      this.settleClaims(c);
    });
    this.holdWhileCongested(c);
  }

  /**
   * A refused frame (`message`: what it held, when it could be read): answered now, or after the
   * frames ahead of it that wait for their claims.
   */
  private refuseInTurn(c: Connection, err: unknown, readWhileOpen: boolean, message?: Envelope): void {
    if (c.claims === undefined) {
      this.refuse(c, err, message);
      return;
    }
    c.claims.push({ error: err, message, verdict: '', readWhileOpen });
    this.settleClaims(c);
  }

  /** Handles the frames at the head of `c`'s claims whose verdict came, in order. */
  private settleClaims(c: Connection): void {
    const queue = c.claims;
    if (queue === undefined) return;
    while (queue.length > 0 && queue[0]!.verdict !== undefined) {
      const entry = queue.shift()!;
      if (entry.error !== undefined) this.refuse(c, entry.error, entry.message);
      else if (entry.verdict !== '')
        this.refuse(c, new HypError('HYP_E_WS_REPLAY', { detail: entry.verdict }), entry.message);
      else this.accepted(c, entry.message!, entry.readWhileOpen);
    }
    if (queue.length === 0 && c.claims === queue) c.claims = undefined;
  }

  /** A decoded frame that passed every check: the app's handlers, then the hub's control types. */
  private accepted(c: Connection, message: Envelope, readWhileOpen: boolean): void {
    message.clientId = c.id;
    // a publish that crossed the drain's close frame (1001) on the wire, or that waited out a hold
    // while the client left, is still the client's: keep it
    const crossedDrain =
      !c.open &&
      (this.draining || readWhileOpen) &&
      (message.type === Control.publish || message.type === Control.broadcast);
    if (!c.open && !crossedDrain) return;
    for (const h of this.messageHandlers) this.guard(() => h(c, message));
    if (!c.open && !crossedDrain) return;
    let id = '';
    try {
      id = publishIdOf(message);
      this.control(c, message, id);
    } catch (err) {
      // a refused subscribe names its channel in the frame too (the request's envelope has none)
      const channel = isHypError(err) && typeof err.params.channel === 'string' ? err.params.channel : '';
      // a refused publish carries its id back, so the client knows which one it was
      this.sendTo(c, errorEnvelope(err, message.channel || channel, id, this.roomRequestOf(c, message)));
    }
    this.holdWhileCongested(c);
  }

  /**
   * The worker's IPC channel to the supervisor is backed up (ipc-flow.ts):
   * stop reading from `c` until it drains. Its messages wait in the kernel
   * and TCP flow control slows the client down, instead of the worker
   * queueing them without bound. Read again once the channel drains; not
   * pinged meanwhile (its pong would wait unread too).
   */
  private holdWhileCongested(c: Connection): void {
    // closed: what held clients sent is handed on at once (shutdown)
    if (c.held || this.closed) return;
    const flow = this.congestedFlow();
    if (flow === undefined) return;
    c.held = true;
    this.holding.add(c);
    c.ws.pause();
    this.metrics.held.inc();
    flow.whenDrained(() => {
      if (!this.holding.delete(c)) return;
      c.held = false;
      c.pingAt = this.clock();
      c.awaitingPong = false;
      if (!this.receiveHeld(c)) return;
      if (c.open) c.ws.resume();
    });
  }

  /**
   * The path a publish would wait behind now, if one is congested: the shared
   * history's (channel publishes go there), else the bus's. One drains, the
   * other may still be congested: callers look again after each drain.
   */
  private congestedFlow(): Flow | undefined {
    if (this.shared?.flow?.congested) return this.shared.flow;
    if (this.bus.flow?.congested) return this.bus.flow;
    if (this.claims?.flow.congested) return this.claims.flow;
    return undefined;
  }

  /**
   * Handle the frames that arrived while `c` was held, in order. Stops, and
   * returns false, when one of them holds `c` again: the rest wait, ahead of
   * anything the socket still emits.
   */
  private receiveHeld(c: Connection): boolean {
    const inbox = c.inbox;
    c.inbox = undefined;
    c.inboxBytes = 0;
    if (inbox === undefined) return true;
    for (let i = 0; i < inbox.length; i++) {
      this.receive(c, inbox[i]!, true);
      if (c.held) {
        // receive() queued what the socket emitted meanwhile (TypeScript narrowed c.inbox to undefined above)
        const later = c.inbox as Buffer[] | undefined;
        c.inbox = inbox.slice(i + 1);
        if (later !== undefined) c.inbox.push(...later);
        for (const data of c.inbox) c.inboxBytes += data.length;
        return false;
      }
    }
    return true;
  }

  /**
   * A frame refused before its handling (`message`: what it held, when it could be read). One
   * that did not decode is named by the fields it still held readably (codecs/decode-error.ts):
   * the refusal carries its `channel`, its publish `id` and its room request, as the refusal of
   * a decoded frame does, so the client can tell which of its requests it answers.
   */
  private refuse(c: Connection, err: unknown, message?: Envelope): void {
    this.metrics.securityFailure(failureReason(err));
    const m = message ?? readableFields(err);
    this.sendTo(c, errorEnvelope(err, m?.channel ?? '', m ? echoedId(m) : '', m && this.roomRequestOf(c, m)));
    if (++c.failures >= this.maxFailures) this.close(c, 1008, 'too many invalid messages');
  }

  /**
   * The room request `m` is, named in its refusal: its type, and its room when its data decodes.
   * A client's join and the member-list request behind it get the same room: the type tells
   * which one a refusal answers (a replay refusal can hit either).
   */
  private roomRequestOf(c: Connection, m: Envelope): RefusedRoomRequest | undefined {
    if (m.type !== Control.joinRoom && m.type !== Control.leaveRoom && m.type !== Control.presence)
      return undefined;
    try {
      return { request: m.type, room_id: c.codec.decodeRoomRequest(m.data, m.type).roomId };
    } catch {
      return { request: m.type };
    }
  }

  /** `id`: the valid publish id of a publish or broadcast ('' for none), to acknowledge it. */
  private control(c: Connection, m: Envelope, id = ''): void {
    switch (m.type) {
      case Control.subscribe: {
        const req = c.codec.decodeChannelRequest(m.data, m.type);
        this.checkName('channel', req.channel);
        if (this.options.canSubscribe && !this.options.canSubscribe(c, req.channel))
          throw new HypError('HYP_E_WS_FORBIDDEN_CHANNEL', {
            kind: 'channel',
            name: req.channel,
            channel: req.channel,
          });
        if (this.shared) this.mayRecover(c, req.channel, req.offset);
        this.subscribe(c, req.channel, req.offset);
        return;
      }
      case Control.unsubscribe:
        this.unsubscribe(c, c.codec.decodeChannelRequest(m.data, m.type).channel);
        return;
      case Control.joinRoom: {
        const room = c.codec.decodeRoomRequest(m.data, m.type).roomId;
        this.checkName('room', room);
        this.mayJoin(c, room);
        this.joinRoom(c, room);
        return;
      }
      case Control.leaveRoom:
        this.leaveRoom(c, c.codec.decodeRoomRequest(m.data, m.type).roomId);
        return;
      case Control.presence: {
        const room = c.codec.decodeRoomRequest(m.data, m.type).roomId;
        this.mayJoin(c, room);
        this.sendTo(
          c,
          replyEnvelope(Reply.presence, room, { room_id: room, members: this.presence.members(room) }),
        );
        return;
      }
      case Control.publish:
        if (!m.channel)
          throw new HypError('HYP_E_WS_CONTROL', {
            type: m.type,
            detail: 'channel is empty',
            path: 'channel',
          });
        this.checkName('channel', m.channel);
        this.mayPublish(c, m.channel, m.type);
        this.publishEnvelope(
          m.channel,
          this.delivery(m.channel, m.data, c.id, m.timestamp, id),
          id ? c : undefined,
        );
        return;
      case Control.broadcast:
        this.mayPublish(c, '', m.type);
        // the delivery carries the channel as sent, and a client library hands it to that channel's
        // handlers: a broadcast naming a channel needs the right to publish there too
        if (m.channel) this.mayPublish(c, m.channel, m.type);
        this.broadcastEnvelope(this.delivery(m.channel, m.data, c.id, m.timestamp, id), id ? c : undefined);
        return;
    }
  }

  /**
   * A client's channel or room name that the hub would keep: the channel and
   * room indexes, presence on every node and the channel history (the
   * supervisor's pod-wide one included) hold it as a key, so a name as long as
   * a message would let one client pin gigabytes there.
   */
  private checkName(kind: 'channel' | 'room', name: string): void {
    if (name.length <= this.maxNameLength) return;
    // the name goes back in the error frame (as sent, no amplification) so the client can tell which request failed
    throw new HypError('HYP_E_WS_NAME_TOO_LONG', {
      kind,
      length: name.length,
      limit: this.maxNameLength,
      ...(kind === 'channel' ? { channel: name } : { room_id: name }),
    });
  }

  /**
   * A client's subscribe under a shared history starts an asynchronous replay
   * (the supervisor's or Redis's): a resume from an offset costs a replay of up
   * to the channel's whole history, in the worker until it is sent. So per
   * connection: one resume per channel at a time, and at most
   * `maxSubscriptions` channels replaying (those left meanwhile count until
   * their replay ends). Beyond either, HYP_E_WS_RECOVERY_BUSY naming the
   * channel; the subscription is as it was.
   */
  private mayRecover(c: Connection, channel: string, offset: string): void {
    const state = c.recovering?.get(channel);
    if (state) {
      if (!offset || !state.resuming) return;
      throw new HypError('HYP_E_WS_RECOVERY_BUSY', {
        channel,
        detail: 'a resume of this channel is under way on this connection; ask again once it is acknowledged',
      });
    }
    const replaying = c.recovering?.size ?? 0;
    if (replaying < this.maxSubscriptions) return;
    // a channel past the subscription limit is refused as such (subscribe → admit)
    const held = (c.channels?.length ?? 0) + (c.rooms?.length ?? 0);
    if (held >= this.maxSubscriptions && !this.channels.get(channel)?.has(c)) return;
    throw new HypError('HYP_E_WS_RECOVERY_BUSY', {
      channel,
      detail: `${replaying} channels are being replayed on this connection (max_subscriptions); ask again once one is acknowledged`,
    });
  }

  private mayJoin(c: Connection, room: string): void {
    if (this.options.canJoin && !this.options.canJoin(c, room))
      throw new HypError('HYP_E_WS_FORBIDDEN_CHANNEL', { kind: 'room', name: room, room_id: room });
  }

  private mayPublish(c: Connection, channel: string, type: string): void {
    if (this.options.canPublish && !this.options.canPublish(c, channel)) {
      throw new HypError('HYP_E_WS_CONTROL', { type, detail: `not allowed to publish on "${channel}"` });
    }
  }

  private delivery(channel: string, data: Uint8Array, clientId: string, timestamp = 0n, id = ''): Envelope {
    const m: Envelope = {
      type: Reply.message,
      channel,
      data,
      timestamp: timestamp || nowNs(),
      clientId,
      offset: '',
    };
    // subscribers dedupe a publish sent again after a reconnect by (client_id, id)
    if (id) m.id = id;
    return m;
  }

  /**
   * Remembers that `c` waits for the acknowledgement of publish `id`, which
   * the shared history's delivery will carry. Refuses (HYP_E_WS_ACK_PENDING)
   * past `maxAwaitingAcks` for one connection: a history that drops
   * publishes (Redis unreachable past its bound) must not grow this map.
   */
  private awaitAck(c: Connection, id: string): void {
    let keys = this.acksOf.get(c);
    if (keys === undefined) {
      keys = new Set();
      this.acksOf.set(c, keys);
    }
    const key = ackKey(c.id, id);
    if (!keys.has(key) && keys.size >= maxAwaitingAcks)
      throw new HypError('HYP_E_WS_ACK_PENDING', { id, limit: maxAwaitingAcks });
    keys.add(key);
    this.awaitingAck.set(key, c);
  }

  /** The shared history delivered an acknowledged publish: tell its publisher, if it is connected here. */
  private acknowledge(channel: string, m: Envelope): void {
    const key = ackKey(m.clientId, m.id!);
    const c = this.awaitingAck.get(key);
    if (c !== undefined) this.acknowledgeKey(key, c, channel, m.id!, m.offset);
  }

  /**
   * Acknowledged publish `id` of `c` is in the shared history at `offset`: its delivery came back,
   * or the history said so first (Redis's reply). Once: the other finds nothing.
   */
  private acknowledgeKey(key: string, c: Connection, channel: string, id: string, offset: string): void {
    if (this.awaitingAck.get(key) !== c) return;
    this.forgetAck(c, key);
    if (c.open) this.sendTo(c, publishedEnvelope(channel, id, offset));
  }

  private forgetAck(c: Connection, key: string): void {
    this.awaitingAck.delete(key);
    const keys = this.acksOf.get(c);
    if (keys?.delete(key) && keys.size === 0) this.acksOf.delete(c);
  }

  /**
   * The shared history or the bus did not take acknowledged publish `id` of `c` (Redis's error,
   * its bound on what waits for Redis): `c` hears it now, with the id, instead of waiting out its
   * acknowledgement timeout. Nothing when `c` left (the client sends it again on its next
   * connection), or, for one `awaited` from the shared history, when it was acknowledged
   * meanwhile (a copy sent again after a reconnect).
   */
  private refusePublish(c: Connection, channel: string, id: string, cause: Error, awaited = false): void {
    if (awaited) {
      const key = ackKey(c.id, id);
      if (this.awaitingAck.get(key) !== c) return;
      this.forgetAck(c, key);
    }
    if (!c.open) return;
    const params = channel ? { id, channel, detail: cause.message } : { id, detail: cause.message };
    this.sendTo(c, errorEnvelope(new HypError('HYP_E_WS_PUBLISH_REFUSED', params, { cause }), channel, id));
  }

  // ---- membership ----

  /**
   * Subscribes `client` to `channel`. With `offset` (from an earlier
   * delivery or ack) the messages published since are sent first, in order,
   * or an HYP_E_WS_RECOVERY_FAILED error frame says they cannot be.
   */
  subscribe(client: HubClient, channel: string, offset = ''): void {
    checkWellFormedName('hub.subscribe', 'channel', channel);
    // gone already (an async hook that finished after the disconnect): nothing would ever remove it
    if (!this.all.has(client)) return;
    const subscribed = this.channels.get(channel)?.has(client) ?? false;
    if (!subscribed) this.admit(client, 'channel', channel);
    if (this.shared) {
      this.subscribeShared(client, channel, offset, this.shared);
      return;
    }
    if (offset) {
      const recovery = this.history.since(channel, offset);
      if (recovery.ok) for (const m of recovery.messages) this.deliver([client], m, undefined, false, true);
      else {
        this.sendTo(
          client,
          errorEnvelope(
            new HypError('HYP_E_WS_RECOVERY_FAILED', { channel, offset, detail: recovery.reason }),
            channel,
          ),
        );
      }
    }
    if (!subscribed) {
      addTo(this.channels, channel, client);
      client.addTo('channels', channel);
    }
    if (this.options.ackSubscribe ?? true) {
      this.sendTo(client, replyEnvelope(Reply.subscribed, channel, { channel }, this.history.head(channel)));
    }
  }

  /**
   * Recovery from the shared history is asynchronous: the client joins the
   * channel at once, live deliveries for it are held back until the replay
   * has been sent, then those not already replayed follow. Nothing is lost,
   * nothing is sent twice, the order is the stream's.
   */
  private subscribeShared(client: HubClient, channel: string, offset: string, shared: SharedHistory): void {
    client.recovering ??= new Map();
    // a subscribe while another recovery of the channel is under way shares its hold: each replay
    // sends what was held until then, the last one to end lets live deliveries through again
    let recovering = client.recovering.get(channel);
    if (recovering) recovering.pending++;
    else {
      recovering = { held: [], heldBytes: 0, pending: 1, resuming: false };
      client.recovering.set(channel, recovering);
    }
    const state = recovering;
    if (offset) state.resuming = true;
    if (!this.channels.get(channel)?.has(client)) {
      addTo(this.channels, channel, client);
      client.addTo('channels', channel);
    }
    const finish = (head: string, replayed: Envelope[], failure?: string): void => {
      if (offset) state.resuming = false;
      if (--state.pending === 0) client.recovering?.delete(channel);
      const held = state.held;
      state.held = [];
      state.heldBytes = 0;
      if (!client.open) return;
      // unsubscribed meanwhile: neither the replay nor what was held is wanted any more
      if (!this.channels.get(channel)?.has(client)) return;
      if (failure !== undefined) {
        const err = new HypError('HYP_E_WS_RECOVERY_FAILED', { channel, offset, detail: failure });
        this.sendTo(client, errorEnvelope(err, channel));
      }
      for (const m of replayed) this.deliver([client], m, undefined, false, true);
      const last = replayed.at(-1)?.offset ?? (offset && failure === undefined ? offset : '');
      for (const m of held) {
        if (gapMarkers.has(m)) {
          // a gap in the live deliveries after m.offset (sharedGap): this client missed it unless
          // it was told already or its replay went past it
          if (failure === undefined && compareStreamIds(last || head, m.offset) <= 0)
            this.sendTo(client, { ...m, offset: '' });
        } else if (!last || compareStreamIds(m.offset, last) > 0) this.sendTo(client, m);
      }
      // XRANGE may have returned entries whose pub/sub announcement has not reached this node yet:
      // those announcements arrive after the replay and must not be delivered a second time
      const lastHeld = held.at(-1)?.offset;
      if (last && (!lastHeld || compareStreamIds(lastHeld, last) <= 0)) {
        client.replayedUpTo ??= new Map();
        client.replayedUpTo.set(channel, last);
      }
      if (this.options.ackSubscribe ?? true) {
        let ack = head;
        for (const o of [last, held.at(-1)?.offset ?? '']) if (o && compareStreamIds(o, ack) > 0) ack = o;
        this.sendTo(client, replyEnvelope(Reply.subscribed, channel, { channel }, ack));
      }
    };
    const wanted = (): boolean => client.open && (this.channels.get(channel)?.has(client) ?? false);
    shared.recover(channel, offset, wanted).then(
      ({ head, recovery }) => {
        if (!recovery.ok) return finish(head, [], recovery.reason);
        for (const m of recovery.messages) unpackPublishId(m);
        return finish(head, recovery.messages);
      },
      (err: unknown) => {
        this.options.log?.warn({ err, channel }, 'websocket shared history unavailable');
        finish('', [], `shared history unavailable: ${(err as Error).message}`);
      },
    );
  }

  /**
   * Deliveries the shared history lost while this node was cut off from it: its subscribers get
   * the error a resume past the gap gets, then the resume point (`subscribed`). A client still
   * recovering the channel gets it in order with what is held for it, unless its replay covered it.
   */
  private sharedGap(gap: Gap): void {
    const subscribers = this.channels.get(gap.channel);
    if (!subscribers) return;
    const { channel, offset, detail } = gap;
    const err = errorEnvelope(new HypError('HYP_E_WS_RECOVERY_FAILED', { channel, offset, detail }), channel);
    const live: HubClient[] = [];
    for (const c of subscribers) {
      const recovering = c.recovering?.get(channel);
      if (recovering) {
        const marker = { ...err, offset };
        gapMarkers.add(marker);
        recovering.held.push(marker);
      } else live.push(c);
    }
    this.deliver(live, err);
    if (this.options.ackSubscribe ?? true)
      this.deliver(live, replyEnvelope(Reply.subscribed, channel, { channel }, gap.resume));
  }

  unsubscribe(client: HubClient, channel: string): void {
    removeFrom(this.channels, channel, client);
    client.removeFrom('channels', channel);
    // per-channel state goes with the channel: a client cycling through channels must not grow it
    if (client.replayedUpTo?.delete(channel) && client.replayedUpTo.size === 0)
      client.replayedUpTo = undefined;
  }

  joinRoom(client: HubClient, room: string): void {
    checkWellFormedName('hub.joinRoom', 'room', room);
    if (!this.all.has(client)) return;
    if (!this.rooms.get(room)?.has(client)) {
      this.admit(client, 'room', room);
      addTo(this.rooms, room, client);
      client.addTo('rooms', room);
    }
    this.presenceChange('join', room, client.id, this.presence.join(room, client.id, this.bus.nodeId));
  }

  /**
   * Refuses a new channel or room beyond `maxSubscriptions` (channels plus
   * rooms per connection) with HYP_E_WS_TOO_MANY_SUBSCRIPTIONS; the
   * connection stays open. The caller has checked it is not held already.
   */
  private admit(client: HubClient, kind: 'channel' | 'room', name: string): void {
    const held = (client.channels?.length ?? 0) + (client.rooms?.length ?? 0);
    if (held < this.maxSubscriptions) return;
    throw new HypError('HYP_E_WS_TOO_MANY_SUBSCRIPTIONS', {
      kind,
      name,
      limit: this.maxSubscriptions,
      ...(kind === 'channel' ? { channel: name } : { room_id: name }),
    });
  }

  leaveRoom(client: HubClient, room: string): void {
    removeFrom(this.rooms, room, client);
    client.removeFrom('rooms', room);
    this.presenceChange('leave', room, client.id, this.presence.leave(room, client.id, this.bus.nodeId));
  }

  /** Client ids in `room` on every node. */
  members(room: string): string[] {
    return this.presence.members(room);
  }

  /**
   * A local join or leave: the room's members here hear of it when the
   * member list changed; the other nodes whenever this node's holding did
   * (the same client id may be in the room through another node too).
   */
  private presenceChange(kind: 'join' | 'leave', room: string, clientId: string, change: Change): void {
    if (change === 'none') return;
    const event = this.presenceEvent(kind, room, clientId);
    if (change === 'member') this.deliver(this.rooms.get(room), event);
    this.toBus(kind, room, event);
  }

  private presenceEvent(kind: 'join' | 'leave', room: string, clientId: string): Envelope {
    const event = replyEnvelope(Reply.presence, room, { event: kind, room_id: room, client_id: clientId });
    event.clientId = clientId;
    return event;
  }

  /** Membership changes learned from another node (its events, its snapshot, its death): local clients only. */
  private presenceNews(kind: 'join' | 'leave', pairs: readonly Pair[]): void {
    for (const [room, clientId] of pairs) {
      this.deliver(this.rooms.get(room), this.presenceEvent(kind, room, clientId));
    }
  }

  /**
   * Every `presenceIntervalMs`: announce this node's memberships (while it
   * holds any, and once after), then drop the nodes that stopped announcing.
   */
  private presenceTick(): void {
    const now = this.clock();
    // this timer came late (a blocked loop): the alives that keep the others are likely still unread
    const late = this.presenceTickAt > 0 && now - this.presenceTickAt > 2 * this.presenceIntervalMs;
    this.presenceTickAt = now;
    const own = this.presence.summary(this.bus.nodeId);
    if (own.count > 0 || this.announcedMembers) {
      const facts = encodeAlive({ ...own, intervalMs: this.presenceIntervalMs });
      this.toBus('alive', '', envelope({ data: facts }));
    }
    this.announcedMembers = own.count > 0;
    if (late) return;
    for (const origin of this.peers.stale(now)) {
      if (this.presence.summary(origin).count > 0) this.metrics.presenceRepair('silence');
      const left = this.presence.dropNode(origin);
      if (left.length > 0) {
        this.options.log?.info({ node: origin, members: left.length }, 'websocket presence: node gone');
      }
      this.presenceNews('leave', left);
    }
  }

  /** Answers a `sync`: every (room, client) this node holds, in chunks sent back to back (in order on the bus). */
  private sendSnapshot(to: string): void {
    const snapshot = ++this.snapshots;
    let index = 0;
    let pairs: string[] = [];
    let chars = 0;
    const flush = (final: boolean): void => {
      const data = encodeMembersChunk({ snapshot, index: index++, final, pairs });
      this.toBus('members', to, envelope({ data }));
      pairs = [];
      chars = 0;
    };
    for (const [room, clientId] of this.presence.pairs(this.bus.nodeId)) {
      if (pairs.length >= 2 * snapshotChunkPairs || chars >= snapshotChunkChars) flush(false);
      pairs.push(room, clientId);
      chars += room.length + clientId.length;
    }
    flush(true);
  }

  /** `alive`, `sync` and `members` from another node (presence upkeep). */
  private presenceUpkeep(event: BusEvent): void {
    const origin = event.origin;
    if (origin === this.bus.nodeId) return;
    switch (event.kind) {
      case 'alive': {
        const facts = decodeAlive(event.message.data);
        if (!facts || this.presenceIntervalMs === 0) return;
        const verdict = this.peers.alive(origin, this.clock(), facts, this.presence.summary(origin));
        if (verdict === 'reset') {
          this.metrics.presenceRepair('reset');
          this.presenceNews('leave', this.presence.dropNode(origin));
        } else if (verdict === 'sync') this.toBus('sync', origin, envelope({}));
        return;
      }
      case 'sync':
        if (event.target === this.bus.nodeId) this.sendSnapshot(origin);
        return;
      case 'members': {
        if (event.target !== this.bus.nodeId) return;
        const chunk = decodeMembersChunk(event.message.data);
        if (!chunk) return;
        const snapshot = this.peers.chunk(origin, chunk);
        if (!snapshot) return;
        const { joined, left } = this.presence.replace(origin, snapshot);
        this.metrics.presenceRepair('snapshot');
        if (joined.length + left.length > 0) {
          this.options.log?.info(
            { node: origin, joined: joined.length, left: left.length },
            'websocket presence repaired from a snapshot',
          );
        }
        this.presenceNews('leave', left);
        this.presenceNews('join', joined);
        return;
      }
    }
  }

  // ---- sending ----

  /** Delivers to every subscriber of `channel` on every node. */
  publish(channel: string, data: Payload): void {
    checkWellFormedName('hub.publish', 'channel', channel);
    this.publishEnvelope(channel, this.delivery(channel, toData(data), ''));
  }

  /** Delivers to every member of `room` on every node, except the client id `except`. */
  toRoom(room: string, data: Payload, options: { except?: string } = {}): void {
    checkWellFormedName('hub.toRoom', 'room', room);
    const message = this.delivery(room, toData(data), '');
    this.deliver(this.rooms.get(room), message, options.except);
    // room NUL except, split at the last NUL: a room name may hold NULs, a client id may not
    this.toBus('room', `${room}\u0000${options.except ?? ''}`, message);
  }

  /** Delivers to every client on every node. */
  broadcast(data: Payload): void {
    this.broadcastEnvelope(this.delivery('', toData(data), ''));
  }

  /** Sends to the client with this id, wherever it is connected. True when it is connected here. */
  sendTo(clientId: string, data: Payload): boolean;
  sendTo(connection: Connection, message: Envelope): void;
  sendTo(target: string | Connection, data: Payload | Envelope): boolean | undefined {
    if (typeof target !== 'string') {
      this.deliver([target], data as Envelope);
      return undefined;
    }
    checkWellFormedName('hub.sendTo', 'client id', target);
    const message = this.delivery('', toData(data as Payload), '');
    const local = this.byId.get(target);
    if (local) {
      this.deliver([local], message);
      return true;
    }
    this.toBus('direct', target, message);
    return false;
  }

  /**
   * True while a publish would wait behind a congested path: the worker's IPC
   * channel to the supervisor, the supervisor's relay hold, or Redis (the bus
   * or the shared history) — what makes the hub hold publishing clients. The
   * app's own `publish`, `broadcast`, `toRoom` and `sendTo` (another node)
   * cannot be held; a loop that sends should wait on `whenDrained()` while
   * this is true. False once the hub is closed.
   */
  get congested(): boolean {
    return !this.closed && this.congestedFlow() !== undefined;
  }

  /**
   * Resolves once no path is congested (at once when none is), or once the
   * hub closes; never rejects. Wait in a loop, `while (hub.congested) await
   * hub.whenDrained()`: other publishes may congest a path again before the
   * caller runs. Every caller shares one wait.
   */
  whenDrained(): Promise<void> {
    if (!this.congested) return Promise.resolve();
    if (this.flowWait === undefined) {
      let resolve = noop;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.flowWait = { promise, resolve };
      this.awaitFlows();
    }
    return this.flowWait.promise;
  }

  /** The app's wait goes on behind whichever path is still congested, or ends (also at close). */
  private readonly awaitFlows = (): void => {
    const wait = this.flowWait;
    if (wait === undefined) return;
    const flow = this.closed ? undefined : this.congestedFlow();
    if (flow !== undefined) {
      flow.whenDrained(this.awaitFlows);
      return;
    }
    this.flowWait = undefined;
    wait.resolve();
  };

  /**
   * `from`: the connection whose publish carried an id, acknowledged once
   * the publish is accepted — appended to this node's history and handed to
   * the bus, or, with a shared history, delivered back by it (then it is in
   * the pod's or Redis's keeping, and has its offset).
   */
  private publishEnvelope(channel: string, message: Envelope, from?: Connection): void {
    const id = from ? message.id : undefined;
    if (this.shared) {
      // every node, this one included, delivers from the shared history's announcement. Awaited only
      // for an open connection: one that left (a publish that crossed the drain, or waited out a hold)
      // has no one to tell, and would take the acknowledgement from the client's next connection
      if (from?.open && id) {
        this.awaitAck(from, id);
        this.shared.publish(channel, packPublishId(message), {
          appended: (offset) => this.acknowledgeKey(ackKey(from.id, id), from, channel, id, offset),
          refused: (err) => this.refusePublish(from, channel, id, err, true),
        });
      } else this.shared.publish(channel, packPublishId(message));
      return;
    }
    if (from && id) {
      this.publishAcked('publish', channel, message, from, id, () => {
        this.history.append(channel, message);
        this.deliver(this.channels.get(channel), message);
        return message.offset;
      });
      return;
    }
    this.history.append(channel, message);
    this.deliver(this.channels.get(channel), message);
    this.toBus('publish', channel, message);
  }

  /** `from`: the connection whose broadcast carried an id, acknowledged once it is on the bus (no history). */
  private broadcastEnvelope(message: Envelope, from?: Connection): void {
    const id = from ? message.id : undefined;
    if (from && id) {
      this.publishAcked('broadcast', '', message, from, id, () => {
        this.deliver(this.all, message);
        return '';
      });
      return;
    }
    this.deliver(this.all, message);
    this.toBus('broadcast', '', message);
  }

  private toBus(kind: BusEventKind, target: string, message: Envelope, outcome?: BusOutcome): void {
    const payload = encodeBusEvent(kind, target, this.bus.nodeId, packPublishId(message));
    this.bus.publish(this.name, payload, outcome);
  }

  /**
   * A client's acknowledged publish or broadcast without a shared history: handed to the bus,
   * then delivered here (`deliverHere`, which returns its offset) unless the bus refused it at
   * once (a RedisBus past its bound on what waits for Redis): then it is delivered nowhere. `from`
   * hears `published` once the bus took it — at once, or, from a bus that `confirms`, on Redis's
   * reply — or HYP_E_WS_PUBLISH_REFUSED with the id (Redis's error: delivered on this node only).
   */
  private publishAcked(
    kind: BusEventKind,
    target: string,
    message: Envelope,
    from: Connection,
    id: string,
    deliverHere: () => string,
  ): void {
    const channel = message.channel;
    let handing = true;
    let sent = false;
    let refusal: Error | undefined;
    let offset = '';
    this.toBus(kind, target, message, {
      sent: () => {
        if (handing) sent = true;
        else if (from.open) this.sendTo(from, publishedEnvelope(channel, id, offset));
      },
      refused: (err) => {
        if (handing) refusal = err;
        else this.refusePublish(from, channel, id, err);
      },
    });
    handing = false;
    if (refusal !== undefined) {
      this.refusePublish(from, channel, id, refusal);
      return;
    }
    offset = deliverHere();
    if ((sent || this.bus.confirms !== true) && from.open)
      this.sendTo(from, publishedEnvelope(channel, id, offset));
  }

  private fromBus(event: BusEvent): void {
    const m = event.message;
    if (event.kind === 'publish' || event.kind === 'broadcast') unpackPublishId(m);
    switch (event.kind) {
      case 'publish':
        this.history.append(event.target, m);
        this.deliver(this.channels.get(event.target), m);
        return;
      case 'room': {
        const nul = event.target.lastIndexOf('\u0000');
        if (nul < 0) this.deliver(this.rooms.get(event.target), m);
        else {
          const except = event.target.slice(nul + 1);
          this.deliver(this.rooms.get(event.target.slice(0, nul)), m, except || undefined);
        }
        return;
      }
      case 'broadcast':
        this.deliver(this.all, m);
        return;
      case 'direct': {
        const c = this.byId.get(event.target);
        if (c) this.deliver([c], m);
        return;
      }
      case 'join':
      case 'leave': {
        if (event.origin === this.bus.nodeId) return;
        if (this.presenceIntervalMs > 0) this.peers.heard(event.origin, this.clock());
        const change =
          event.kind === 'join'
            ? this.presence.join(event.target, m.clientId, event.origin)
            : this.presence.leave(event.target, m.clientId, event.origin);
        if (change === 'member') this.presenceNews(event.kind, [[event.target, m.clientId]]);
        return;
      }
      default:
        this.presenceUpkeep(event);
    }
  }

  /**
   * The fan-out loop: marshal once per codec, seal once per key set, frame
   * once, then write the same bytes to every socket.
   */
  private deliver(
    targets: Iterable<Connection> | undefined,
    message: Envelope,
    exceptId?: string,
    fromSharedHistory = false,
    /** A replay from history: paced by the socket instead of cut at the send-buffer bound (Backlog). */
    replay = false,
  ): void {
    if (!targets) return;
    const started = performance.now();
    // a reply the client waits for (its acknowledgement, its error, its subscription): never skipped
    const reply =
      message.type === Reply.published || message.type === Reply.error || message.type === Reply.subscribed;
    const plain: Array<Uint8Array | undefined> = new Array(codecSlots);
    const frames: Array<Buffer | undefined> = new Array(codecSlots);
    const count = [0, 0, 0, 0];
    const bytes = [0, 0, 0, 0];
    let perKeySet: Map<KeySet, Array<Buffer | undefined>> | undefined;
    const security = this.security;
    for (const c of targets) {
      if (exceptId !== undefined && c.id === exceptId) continue;
      if (fromSharedHistory && c.replayedUpTo !== undefined) {
        const upTo = c.replayedUpTo.get(message.channel);
        if (upTo !== undefined) {
          if (compareStreamIds(message.offset, upTo) <= 0) continue;
          c.replayedUpTo.delete(message.channel);
          if (c.replayedUpTo.size === 0) c.replayedUpTo = undefined;
        }
      }
      if (fromSharedHistory && c.recovering !== undefined) {
        const recovering = c.recovering.get(message.channel);
        if (recovering) {
          // what is held is this client's send buffer too: a replay slow to come must not grow it without bound
          if (!c.open) {
            this.metrics.dropped.inc({ reason: 'closed' });
            continue;
          }
          const size = heldSize(message);
          if (c.ws.bufferedAmount + recovering.heldBytes + size > this.sendBufferLimit) {
            this.slowConsumerCut(c);
            continue;
          }
          // held until the replay ends: keep a copy, not a view pinning the buffer it was decoded from
          message.data = ownBytes(message.data);
          recovering.held.push(message);
          recovering.heldBytes += size;
          continue;
        }
      }
      if (replay && c.open && (c.backlog || c.ws.bufferedAmount >= this.sendBufferLimit)) {
        if (this.backlogReplay(c, message)) continue;
      }
      const i = c.codec.index;
      let out = plain[i];
      if (out === undefined) {
        try {
          out = plain[i] = c.codec.marshal(message);
        } catch (err) {
          this.options.log?.warn({ err, codec: c.codec.name }, 'websocket marshal failed');
          continue;
        }
      }
      let frame: Buffer | undefined;
      if (security && c.keys) {
        perKeySet ??= new Map();
        let cache = perKeySet.get(c.keys);
        if (!cache) {
          cache = new Array(codecSlots);
          perKeySet.set(c.keys, cache);
        }
        frame = cache[i] ??= prepareFrame(security.seal(out, c.keys), true);
      } else {
        frame = frames[i] ??= prepareFrame(
          security ? security.seal(out) : out,
          security !== undefined || c.codec.frame === 'binary',
        );
      }
      if (this.write(c, frame, replay, reply)) {
        count[i]!++;
        bytes[i]! += frame.length;
      }
    }
    for (let i = 0; i < codecSlots; i++) {
      if (count[i]) this.metrics.countOut(codecNames[i]!, count[i]!, bytes[i]!);
    }
    this.metrics.fanoutSeconds.observe({ scope: 'local' }, (performance.now() - started) / 1000);
  }

  /** Writes one prepared frame, or applies the slow-consumer policy (`reply`: as `close`, whatever the policy). */
  private write(c: Connection, frame: Buffer, replay = false, reply = false): boolean {
    const ws = c.ws;
    if (!c.open || ws.readyState !== 1) {
      this.metrics.dropped.inc({ reason: 'closed' });
      return false;
    }
    const backlog = c.backlog;
    if (backlog) {
      if (replay) backlog.pushReplay(frame);
      // behind a replay still going out: in order, and what is not replay counts against the bound
      else if (backlog.liveBytes + frame.length > this.sendBufferLimit) {
        this.slowConsumerCut(c, reply);
        return false;
      } else backlog.pushFrame(frame);
      return true;
    }
    if (ws.bufferedAmount + frame.length > this.sendBufferLimit) {
      if (replay && this.backlogReplay(c, frame)) return true;
      this.slowConsumerCut(c, reply);
      return false;
    }
    this.writeNow(ws, frame);
    return true;
  }

  private writeNow(ws: WebSocket, frame: Buffer): void {
    const socket = directSocket(ws);
    if (socket) this.corks.write(socket, frame);
    else ws.send(framePayload(frame), (frame[0]! & 0x0f) === 0x02 ? binaryFrame : textFrame);
  }

  /**
   * A replayed message for `c` once its socket holds the bound: it waits in
   * the connection's Backlog and goes out as the socket drains. False when
   * there is no socket to wait on (the message then takes the usual path).
   */
  private backlogReplay(c: Connection, message: Envelope | Buffer): boolean {
    if (c.backlog) {
      c.backlog.pushReplay(message);
      return true;
    }
    const socket = (c.ws as unknown as { _socket?: Duplex | null })._socket;
    if (!socket) return false;
    const backlog = new Backlog(() => this.flushBacklog(c, socket, backlog));
    backlog.pushReplay(message);
    c.backlog = backlog;
    socket.on('drain', backlog.onDrain);
    // nothing in the socket's own buffer ('drain' would not come): what is buffered sits in ws's sender
    if (!socket.writableNeedDrain) setImmediate(backlog.onDrain);
    return true;
  }

  /** The socket drained: write what waits, up to the bound again; done once nothing waits. */
  private flushBacklog(c: Connection, socket: Duplex, backlog: Backlog): void {
    if (c.backlog !== backlog) return;
    if (!c.open || c.ws.readyState !== 1) {
      socket.off('drain', backlog.onDrain);
      c.backlog = undefined;
      return;
    }
    while (socket.writableLength < this.sendBufferLimit) {
      const item = backlog.shift();
      if (item === undefined) {
        socket.off('drain', backlog.onDrain);
        c.backlog = undefined;
        return;
      }
      const frame = Buffer.isBuffer(item) ? item : this.frameFor(c, item);
      if (!frame) continue;
      this.writeNow(c.ws, frame);
      if (!Buffer.isBuffer(item)) this.metrics.countOut(c.codec.name, 1, frame.length);
    }
    if (!socket.writableNeedDrain) setImmediate(backlog.onDrain);
  }

  /** One message framed for one connection (its codec, its keys). */
  private frameFor(c: Connection, message: Envelope): Buffer | undefined {
    let out: Uint8Array;
    try {
      out = c.codec.marshal(message);
    } catch (err) {
      this.options.log?.warn({ err, codec: c.codec.name }, 'websocket marshal failed');
      return undefined;
    }
    const security = this.security;
    if (!security) return prepareFrame(out, c.codec.frame === 'binary');
    return prepareFrame(c.keys ? security.seal(out, c.keys) : security.seal(out), true);
  }

  /**
   * A message that would take `c` past `sendBufferLimit`: dropped, and with
   * the close policy so is `c`. A reply the client waits for cuts `c` under
   * the drop policy too: skipped, it would leave the client waiting out its
   * timeout for a publish the hub took; cut, the client sends it again.
   */
  private slowConsumerCut(c: Connection, reply = false): void {
    this.metrics.dropped.inc({ reason: 'slow_consumer' });
    if (this.slowConsumer === 'close' || reply) {
      this.options.log?.debug(
        { client: c.id, buffered: c.ws.bufferedAmount },
        'websocket slow consumer cut off',
      );
      c.open = false;
      c.ws.terminate();
    }
  }

  // ---- lifecycle ----

  close(c: Connection, code: number, reason: string): void;
  close(): Promise<void>;
  close(c?: Connection, code = 1000, reason = ''): Promise<void> | undefined {
    if (c) {
      if (c.open) {
        c.open = false;
        c.ws.close(code, reason);
        // A held client is read again, up to its close frame: what it sent meanwhile joins its inbox
        // (bounded below), and the handshake ends without waiting out the timer below.
        if (c.held) c.ws.resume();
        setTimeout(() => c.ws.terminate(), 2_000).unref();
      }
      return undefined;
    }
    return this.shutdown();
  }

  private async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // What held clients sent before their hold (read up to a close frame, their socket perhaps
    // closed since) is theirs: handed on now, congested or not, rather than dropped with the
    // worker (which writes out its IPC queue before it exits). A frame waiting for its replay
    // claim is waited for, within the claim's own bound.
    for (const c of [...this.holding]) {
      this.holding.delete(c);
      c.held = false;
      this.receiveHeld(c);
    }
    await this.claims?.settled?.();
    // the app's loops waiting to publish go on (and see the hub closed) instead of hanging the shutdown
    this.awaitFlows();
    this.refusePending(() => new HypError('HYP_E_DRAINING'));
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.untrackPresence();
    for (const t of this.drainTimers) clearTimeout(t);
    for (const c of [...this.all]) {
      c.open = false;
      c.ws.terminate();
      this.remove(c, 1006);
    }
    this.stopBus();
    this.stopShared();
    this.wss.close();
    if (this.options.ownTransports) {
      await Promise.allSettled([this.bus.close(), this.shared?.close(), this.claims?.close()]);
    }
  }

  /** @internal socket 'close' */
  remove(c: Connection, code: number): void {
    if (!this.all.delete(c)) return;
    c.open = false;
    if (this.byId.get(c.id) === c) this.byId.delete(c.id);
    const acks = this.acksOf.get(c);
    if (acks) {
      // not acknowledged: the client sends them again on its next connection
      for (const key of acks) if (this.awaitingAck.get(key) === c) this.awaitingAck.delete(key);
      this.acksOf.delete(c);
    }
    if (c.channels) for (const ch of c.channels) removeFrom(this.channels, ch, c);
    if (c.rooms) {
      // a newer connection with the same id keeps the membership only where it joined too
      const current = this.byId.get(c.id);
      for (const room of c.rooms) {
        removeFrom(this.rooms, room, c);
        const stays = current !== undefined && (this.rooms.get(room)?.has(current) ?? false);
        if (!stays)
          this.presenceChange('leave', room, c.id, this.presence.leave(room, c.id, this.bus.nodeId));
      }
    }
    this.metrics.connections.dec({ codec: c.codec.name });
    for (const h of this.disconnectHandlers) this.guard(() => h(c, code));
  }

  /**
   * Stops taking upgrades and closes every connection with 1001 and a
   * reconnect hint, each at a uniformly random moment in `spreadMs` (at most
   * 90% of the time left before `deadline`), so clients do not all reconnect
   * at once. Resolves when all are gone; connections left at `deadline` are
   * terminated.
   */
  drain(options: DrainOptions): Promise<void> {
    this.draining = true;
    // upgrades still waiting on authorize would otherwise complete into a draining hub, or wait out the timeout
    this.refusePending(() => new HypError('HYP_E_DRAINING'));
    // every close frame goes out well before the deadline (by 90% of the time left), so no client
    // that a spread longer than the time left would reach late is terminated (1006, no hint) instead
    const left = options.deadline === undefined ? Number.POSITIVE_INFINITY : options.deadline - Date.now();
    const spread = Math.max(0, Math.min(options.spreadMs, left * 0.9));
    for (const c of this.all) {
      const at = Math.random() * spread;
      const t = setTimeout(
        () => this.close(c, 1001, `reconnect;delay=${Math.round(Math.random() * 1000)}`),
        at,
      );
      this.drainTimers.push(t);
    }
    return new Promise((resolve) => {
      const check = setInterval(() => {
        const late = options.deadline !== undefined && Date.now() >= options.deadline;
        if (late) for (const c of this.all) c.ws.terminate();
        if (this.all.size === 0 || late) {
          clearInterval(check);
          resolve();
        }
      }, 25);
    });
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Number of connected clients on this node. */
  clients(): number {
    return this.all.size;
  }

  client(id: string): HubClient | undefined {
    return this.byId.get(id);
  }

  subscribers(channel: string): number {
    return this.channels.get(channel)?.size ?? 0;
  }

  /** Milliseconds since the hub started: small integers stay unboxed in every connection. */
  private clock(): number {
    return Math.round(performance.now() - this.startedAt);
  }

  private sweep(): void {
    const now = this.clock();
    for (const c of this.all) {
      if (c.held) continue;
      if (c.awaitingPong) {
        if (now - c.pingAt > this.pongTimeoutMs) {
          this.options.log?.debug({ client: c.id }, 'websocket pong timeout');
          c.open = false;
          c.ws.terminate();
        }
      } else if (now - c.pingAt >= this.pingIntervalMs && c.ws.readyState === 1) {
        c.awaitingPong = true;
        c.pingAt = now;
        c.ws.ping();
      }
    }
  }

  /** Runs an application callback: a throw, or a rejection of the promise an async one returns, is logged. */
  private guard(fn: () => unknown): void {
    try {
      const result = fn();
      if (result instanceof Promise) result.catch(this.logCallbackError);
    } catch (err) {
      this.logCallbackError(err);
    }
  }

  private readonly logCallbackError = (err: unknown): void => {
    this.options.log?.error({ err }, 'websocket hub callback threw');
  };
}

function noop(): void {}

/** Acknowledged publishes one connection may have waiting for the shared history (publishEnvelope). */
const maxAwaitingAcks = 1024;

/**
 * The publish id of a client's `publish` or `broadcast` ('' for none); one
 * that is not a publish id is HYP_E_WS_PUBLISH_ID (never echoed back: it may
 * be anything). Other types keep theirs for `onMessage` and nothing more.
 */
/** The key of an acknowledgement awaited for publish `id` of client `clientId` (`awaitingAck`). */
function ackKey(clientId: string, id: string): string {
  return `${clientId}\u0000${id}`;
}

/**
 * The publish id a refusal of `m` carries back: that of a publish or broadcast when it is a
 * valid one (an invalid id is never echoed, as HYP_E_WS_PUBLISH_ID says), else ''.
 */
function echoedId(m: Envelope): string {
  if (m.id === undefined || (m.type !== Control.publish && m.type !== Control.broadcast)) return '';
  return publishIdProblem(m.id) === undefined ? m.id : '';
}

function publishIdOf(m: Envelope): string {
  if (m.id === undefined || (m.type !== Control.publish && m.type !== Control.broadcast)) return '';
  const problem = publishIdProblem(m.id);
  if (problem !== undefined) throw new HypError('HYP_E_WS_PUBLISH_ID', { detail: problem });
  return m.id;
}

/**
 * Bus events and shared-history entries (bus-event.ts) carry no publish id:
 * a delivery with one travels as client id NUL publish id. A client id never
 * holds a NUL (the upgrade refuses one) and a publish id never does either.
 */
function packPublishId(m: Envelope): Envelope {
  return m.id ? { ...m, clientId: `${m.clientId}\u0000${m.id}` } : m;
}

function unpackPublishId(m: Envelope): void {
  const nul = m.clientId.indexOf('\u0000');
  if (nul < 0) return;
  const id = m.clientId.slice(nul + 1);
  m.clientId = m.clientId.slice(0, nul);
  if (id) m.id = id;
}

/**
 * About what a held delivery takes on the wire, at least: its strings and
 * data plus the envelope around them (JSON's keys and a 19-digit timestamp,
 * or a sealed frame's nonce, tag and MAC).
 */
function heldSize(m: Envelope): number {
  return m.data.byteLength + m.channel.length + m.clientId.length + m.offset.length + 128;
}

/** Gap errors held for a recovering client (sharedGap), told apart from the deliveries held with them. */
const gapMarkers = new WeakSet<Envelope>();

function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return (
    typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'
  );
}

const connectionKey = Symbol('hyp.ws.connection');
type TaggedSocket = WebSocket & { [connectionKey]?: Connection };

function onSocketMessage(this: TaggedSocket, data: Buffer | ArrayBuffer | Buffer[]): void {
  const c = this[connectionKey];
  // CLOSING: our close frame is on its way; what the peer sent before seeing it is still read
  if (c && (c.open || this.readyState === 2)) c.owner.receive(c, toBuffer(data));
}

function onSocketPong(this: TaggedSocket): void {
  const c = this[connectionKey];
  if (c) c.awaitingPong = false;
}

function onSocketClose(this: TaggedSocket, code: number): void {
  const c = this[connectionKey];
  if (c) c.owner.remove(c, code);
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  return Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

function addTo(index: Map<string, Set<Connection>>, key: string, c: Connection): void {
  let set = index.get(key);
  if (!set) {
    set = new Set();
    index.set(key, set);
  }
  set.add(c);
}

function removeFrom(index: Map<string, Set<Connection>>, key: string, c: Connection): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(c);
  if (set.size === 0) index.delete(key);
}

export function createHub(options: HubOptions = {}): Hub {
  return new Hub(options);
}
