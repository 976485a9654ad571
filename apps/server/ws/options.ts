import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../../../supervisor/config/schema.js';
import { durationMs, parseDuration, parseSize } from '../../../supervisor/config/units.js';
import { type Bus, IpcBus, LocalBus, RedisBus } from './bus.js';
import type { HubOptions } from './hub.js';
import { IpcHistory } from './ipc-history.js';
import { IpcNonceClaims, type NonceClaims, RedisNonceClaims } from './nonce-claims.js';
import { RedisHistory, type SharedHistory } from './redis-history.js';
import { defaultReplayCacheSize, hasKeys, keysFromFiles } from './security.js';

/**
 * Turns the validated `websocket` config section into hub options. The
 * caller (the worker's `app.websocket(path, options)`) spreads its own
 * options over the result: code wins over config for hooks, config
 * supplies limits, keys and the bus.
 */
export interface RuntimeContext {
  registry?: Registry;
  log?: Logger;
  workerId?: number;
  /** The process IPC channel when running under the supervisor. */
  ipc?: NodeJS.Process;
  /** The hub's path (default `websocket.path`): names its channels in the pod-wide history. */
  path?: string;
}

function ms(text: string): number {
  return parseDuration(text) ?? 0;
}

function bytes(text: string): number {
  return parseSize(text) ?? 0;
}

export function busFromConfig(config: Config['websocket'], ctx: RuntimeContext = {}): Bus {
  if (config.bus.driver === 'redis') {
    return new RedisBus({
      url: config.bus.redis_url,
      nodeId: ctx.workerId !== undefined ? redisNodeId(ctx.workerId) : undefined,
      log: ctx.log,
    });
  }
  const ipc = ctx.ipc ?? process;
  return typeof ipc.send === 'function' ? new IpcBus(ipc, ctx.workerId) : new LocalBus();
}

/**
 * This worker's id on the Redis bus, unique across pods: its worker id and
 * host name (the pod name) for the logs, and random bytes, because worker
 * ids and PIDs repeat from pod to pod (every pod's supervisor is PID 1 in
 * its PID namespace), and two nodes of one id drop each other's messages as
 * their own echoes.
 */
export function redisNodeId(workerId: number): string {
  return `worker-${workerId}-${hostname().slice(0, 64)}-${randomBytes(6).toString('hex')}`;
}

/** Under the supervisor: an IPC channel and inherited listeners (LISTEN_FDS). */
function supervised(ipc: NodeJS.Process): boolean {
  return typeof ipc.send === 'function' && process.env.LISTEN_FDS !== undefined;
}

/**
 * Where channel history lives when it must be valid on more than one node:
 * Redis Streams (every pod) with the redis driver, the supervisor (every
 * worker of the pod, across worker restarts) with the ipc driver under a
 * supervisor. Otherwise (one process, tests) the hub's in-memory history.
 */
export function sharedHistoryFromConfig(
  config: Config['websocket'],
  ctx: RuntimeContext = {},
): SharedHistory | undefined {
  if (config.history_size <= 0) return undefined;
  if (config.bus.driver === 'redis')
    return new RedisHistory({
      url: config.bus.redis_url,
      size: config.history_size,
      prefix: redisHistoryPrefix(ctx.path ?? config.path, config.path),
      log: ctx.log,
    });
  const ipc = ctx.ipc ?? process;
  return supervised(ipc) ? new IpcHistory({ topic: ctx.path ?? config.path, channel: ipc }) : undefined;
}

/**
 * The Redis key prefix of a hub's history: `hyp` (streams `hyp:hist:<channel>`)
 * for the hub on `websocket.path`, `hyp:ws<path>` for any other, so hubs on
 * different paths never share a channel's stream or announcements (the bus
 * already keeps them apart by topic). The default hub keeps the names of
 * earlier releases, so a rolling update between them shares history.
 */
export function redisHistoryPrefix(path: string, defaultPath: string): string {
  return path === defaultPath ? 'hyp' : `hyp:ws${path}`;
}

/**
 * Where a hub's replay guard claims nonces beyond its own worker: Redis (every
 * pod) with the redis driver, the supervisor (every worker of the pod) with
 * the ipc driver under a supervisor; otherwise (one process) none is needed.
 */
export function replayClaimsFromConfig(
  config: Config['websocket'],
  windowMs: number,
  ctx: RuntimeContext = {},
): NonceClaims | undefined {
  if (windowMs <= 0) return undefined;
  const path = ctx.path ?? config.path;
  if (config.bus.driver === 'redis')
    return new RedisNonceClaims({
      url: config.bus.redis_url,
      prefix: redisHistoryPrefix(path, config.path),
      windowMs,
    });
  const ipc = ctx.ipc ?? process;
  return supervised(ipc)
    ? new IpcNonceClaims({ topic: path, windowMs, maxEntries: defaultReplayCacheSize, channel: ipc })
    : undefined;
}

export function hubOptionsFromConfig(config: Config, ctx: RuntimeContext = {}): HubOptions {
  const ws = config.websocket;
  const keys = keysFromFiles(ws.security.aes_key_file, ws.security.hmac_key_file);
  const replayWindowMs = ms(ws.security.replay_window);
  return {
    name: ws.path,
    codecs: ws.codecs,
    allowedOrigins: ws.allowed_origins,
    maxMessageSize: bytes(ws.max_message_size),
    pingIntervalMs: ms(ws.ping_interval),
    pongTimeoutMs: ms(ws.pong_timeout),
    sendBufferLimit: bytes(ws.send_buffer_limit),
    slowConsumer: ws.slow_consumer,
    historySize: ws.history_size,
    historyBytes: bytes(ws.history_bytes),
    maxSubscriptions: ws.max_subscriptions,
    // undecodable frames are counted without keys too
    maxFailures: ws.security.max_failures,
    authorizeTimeoutMs: durationMs(ws.authorize_timeout),
    compression: {
      enabled: ws.compression.enabled,
      level: ws.compression.level,
      threshold: bytes(ws.compression.threshold),
      concurrency: ws.compression.concurrency,
    },
    security: hasKeys(keys)
      ? {
          keys,
          signThenEncrypt: ws.security.sign_then_encrypt,
          replayWindowMs,
          replayClaims: replayClaimsFromConfig(ws, replayWindowMs, ctx),
        }
      : undefined,
    bus: busFromConfig(ws, ctx),
    // channel publishes then go through the shared history only (never the bus too): exactly once
    sharedHistory: sharedHistoryFromConfig(ws, ctx),
    ownTransports: true,
    registry: ctx.registry,
    log: ctx.log,
  };
}

/** `drain.websocket_spread` in milliseconds, for `hub.drain({ spreadMs })`. */
export function drainSpreadMs(config: Config): number {
  return ms(config.drain.websocket_spread);
}
