/** The WebSocket hub's public surface. */
export {
  type Bus,
  type BusHandler,
  IpcBus,
  LocalBus,
  LocalBusGroup,
  RedisBus,
  type RedisBusOptions,
} from './bus.js';
export {
  type Codec,
  type CodecName,
  codecByName,
  codecs,
  flatbuffersCodec,
  jsonCodec,
  msgpackCodec,
  negotiate,
  protobufCodec,
} from './codecs/index.js';
export { Control, Reply } from './control.js';
export { type Envelope, envelope, nowNs } from './envelope.js';
export {
  type Authorization,
  type Authorize,
  createHub,
  type DrainOptions,
  Hub,
  type HubClient,
  type HubOptions,
  type HubSecurityOptions,
  type Payload,
} from './hub.js';
export { WsMetrics } from './metrics.js';
export {
  IpcNonceClaims,
  type IpcNonceClaimsOptions,
  type NonceClaims,
  RedisNonceClaims,
  type RedisNonceClaimsOptions,
} from './nonce-claims.js';
export {
  busFromConfig,
  drainSpreadMs,
  hubOptionsFromConfig,
  type RuntimeContext,
  replayClaimsFromConfig,
} from './options.js';
export {
  compareStreamIds,
  RedisHistory,
  type RedisHistoryOptions,
  type SharedHistory,
} from './redis-history.js';
export { type KeySet, keysFromFiles, ReplayGuard, Security, type SecurityOptions } from './security.js';
