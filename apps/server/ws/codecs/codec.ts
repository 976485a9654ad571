import type { Envelope } from '../envelope.js';

export type CodecName = 'json' | 'protobuf' | 'flatbuffers' | 'msgpack';

/** A subscribe/unsubscribe request; `offset` asks for recovery from there. */
export interface ChannelRequest {
  channel: string;
  offset: string;
}

export interface RoomRequest {
  roomId: string;
}

/**
 * One wire format. `marshal` and `unmarshal` are pure; `unmarshal` either
 * returns an envelope or throws a `HYP_E_WS_DECODE` HypError, nothing else.
 */
export interface Codec {
  readonly name: CodecName;
  /** Stable index: json 0, protobuf 1, flatbuffers 2, msgpack 3. */
  readonly index: number;
  /** WebSocket frame type when no security layer wraps the bytes. */
  readonly frame: 'text' | 'binary';
  marshal(message: Envelope): Uint8Array;
  unmarshal(bytes: Uint8Array): Envelope;
  /** Control data of subscribe/unsubscribe (JSON `{"channel"}`, protobuf `ChannelRequest`). */
  decodeChannelRequest(data: Uint8Array): ChannelRequest;
  encodeChannelRequest(request: ChannelRequest): Uint8Array;
  /** Control data of join_room/leave_room (JSON `{"room_id"}`, protobuf `RoomRequest`). */
  decodeRoomRequest(data: Uint8Array): RoomRequest;
  encodeRoomRequest(request: RoomRequest): Uint8Array;
}
