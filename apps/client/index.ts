/** `hyp/client`: the WebSocket client (browser + Node). */
export type { CodecName } from '../server/ws/codecs/index.js';
export { ClientReplayGuard } from './replay.js';
export { type ClientKeys, ClientSecurity, type OpenedFrame, SecurityError } from './security.js';
export {
  type HypErrorFrame,
  type HypMessage,
  HypWebSocket,
  type HypWebSocketOptions,
  type Payload,
  type ReconnectOptions,
  type SocketConstructor,
  type SocketLike,
} from './ws.js';
