/** Public API of hyp's application runtime. */

export { catalog, type ErrorCode, HypError } from '../../supervisor/errors.js';
export {
  App,
  type AppContext,
  type AppDefinition,
  type AppOptions,
  type AppSetup,
  defineApp,
  type ErrorHandler,
  type Handler,
  type Middleware,
} from './app.js';
export type { BodyKind, BodyTypes } from './body.js';
export { type BodyOptions, Context, type HttpRequest, type HttpResponse } from './context.js';
export { RouteGroup, type RouteHandlers } from './group.js';
export type { MountOptions, NodeHandler } from './mount.js';
export type { Next } from './router.js';
export type { SseEvent, SseOptions, SseStream } from './sse.js';
export type { StaticOptions } from './static.js';
export * from './tcp/index.js';
export type { Envelope } from './ws/envelope.js';
export type {
  Authorization,
  Authorize,
  DrainOptions,
  Hub,
  HubClient,
  HubOptions,
  HubSecurityOptions,
  Payload,
} from './ws/hub.js';
export {
  IpcNonceClaims,
  type IpcNonceClaimsOptions,
  type NonceClaims,
  RedisNonceClaims,
  type RedisNonceClaimsOptions,
} from './ws/nonce-claims.js';
export type { KeySet } from './ws/security.js';
