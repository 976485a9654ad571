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
 * returns an envelope or throws a `HYP_E_WS_DECODE` HypError, nothing else:
 * with `offset` (the byte where it gave up), `path` (the field at fault, if
 * one is) and the fields it could still read (`readableFields`).
 */
export interface Codec {
  readonly name: CodecName;
  /** Stable index: json 0, protobuf 1, flatbuffers 2, msgpack 3. */
  readonly index: number;
  /** WebSocket frame type when no security layer wraps the bytes. */
  readonly frame: 'text' | 'binary';
  marshal(message: Envelope): Uint8Array;
  unmarshal(bytes: Uint8Array): Envelope;
  /**
   * Control data of subscribe/unsubscribe (JSON `{"channel"}`, protobuf `ChannelRequest`).
   * `type`: the control type it came with, named in a HYP_E_WS_CONTROL error (default `subscribe`).
   */
  decodeChannelRequest(data: Uint8Array, type?: string): ChannelRequest;
  encodeChannelRequest(request: ChannelRequest): Uint8Array;
  /**
   * Control data of join_room/leave_room/presence (JSON `{"room_id"}`, protobuf `RoomRequest`).
   * `type` as for `decodeChannelRequest` (default `join_room`).
   */
  decodeRoomRequest(data: Uint8Array, type?: string): RoomRequest;
  encodeRoomRequest(request: RoomRequest): Uint8Array;
}
