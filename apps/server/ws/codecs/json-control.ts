import { HypError } from '../../../../supervisor/errors.js';
import { textData, utf8Encoder } from '../envelope.js';
import type { ChannelRequest, RoomRequest } from './codec.js';

/**
 * Control data as JSON bytes (`{"channel":"news"}`, `{"room_id":"lobby"}`),
 * HypGo's format for every codec but protobuf.
 */
function parseObject(kind: string, data: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(textData(data));
  } catch (err) {
    throw new HypError('HYP_E_WS_CONTROL', {
      type: kind,
      detail: `data is not JSON: ${(err as Error).message}`,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HypError('HYP_E_WS_CONTROL', { type: kind, detail: 'data must be a JSON object' });
  }
  return value as Record<string, unknown>;
}

function stringField(kind: string, obj: Record<string, unknown>, key: string, required: boolean): string {
  const value = obj[key];
  if (value === undefined || value === null) {
    if (required) throw new HypError('HYP_E_WS_CONTROL', { type: kind, detail: `"${key}" is missing` });
    return '';
  }
  if (typeof value !== 'string')
    throw new HypError('HYP_E_WS_CONTROL', { type: kind, detail: `"${key}" must be a string` });
  if (required && value === '')
    throw new HypError('HYP_E_WS_CONTROL', { type: kind, detail: `"${key}" is empty` });
  return value;
}

export function decodeJsonChannelRequest(data: Uint8Array): ChannelRequest {
  const obj = parseObject('subscribe', data);
  return {
    channel: stringField('subscribe', obj, 'channel', true),
    offset: stringField('subscribe', obj, 'offset', false),
  };
}

export function encodeJsonChannelRequest(request: ChannelRequest): Uint8Array {
  const body: Record<string, string> = { channel: request.channel };
  if (request.offset) body.offset = request.offset;
  return utf8Encoder.encode(JSON.stringify(body));
}

export function decodeJsonRoomRequest(data: Uint8Array): RoomRequest {
  return { roomId: stringField('join_room', parseObject('join_room', data), 'room_id', true) };
}

export function encodeJsonRoomRequest(request: RoomRequest): Uint8Array {
  return utf8Encoder.encode(JSON.stringify({ room_id: request.roomId }));
}
