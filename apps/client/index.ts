/** `hyp/client`: the WebSocket client (browser + Node). */
export { HypError } from '../../supervisor/errors.js';
export type { CodecName } from '../server/ws/codecs/index.js';
export type { ConnectErrorEvent } from './handshake.js';
export { ClientReplayGuard } from './replay.js';
export { type ClientKeys, ClientSecurity, type OpenedFrame, SecurityError } from './security.js';
export {
  type ChannelErrorCode,
  type ChannelErrorFrame,
  type HypErrorFrame,
  type HypMessage,
  HypWebSocket,
  type HypWebSocketOptions,
  MessageTooLargeError,
  type OtherErrorFrame,
  type Payload,
  type PublishAck,
  PublishAckError,
  type PublishAckOptions,
  type ReconnectOptions,
  type SendOptions,
  type SendType,
  type SocketConstructor,
  type SocketHandler,
  type SocketLike,
} from './ws.js';
