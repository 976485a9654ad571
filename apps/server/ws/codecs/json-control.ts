import { HypError } from '../../../../supervisor/errors.js';
import { utf8Encoder } from '../envelope.js';
import type { ChannelRequest, RoomRequest } from './codec.js';
// json.ts imports this module too: only functions cross the cycle, called after both loaded
import { jsonErrorAt } from './json.js';
import { escapeText, loneSurrogateEscape } from './surrogates.js';
import { invalidUtf8At } from './utf8.js';

/** Strict, so that different bytes never read as one name; a leading BOM is dropped as before. */
const utf8StrictDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Control data as JSON bytes (`{"channel":"news"}`, `{"room_id":"lobby"}`),
 * HypGo's format for every codec but protobuf.
 */
function parseObject(kind: string, data: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = utf8StrictDecoder.decode(data);
  } catch {
    // msgpack and FlatBuffers carry this JSON as bytes: read leniently, two different names
    // would both become U+FFFD
    const at = invalidUtf8At(data);
    throw new HypError('HYP_E_WS_CONTROL', {
      type: kind,
      detail: `data is not UTF-8 at byte ${at}`,
      offset: at,
      path: 'data',
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // JSON.parse names a position for some errors only (and in UTF-16 units): the JSON codec's scanner gives the byte
    const at = jsonErrorAt(data);
    throw new HypError('HYP_E_WS_CONTROL', {
      type: kind,
      detail: `data is not JSON: ${(err as Error).message}${at < 0 ? '' : ` (byte ${at})`}`,
      offset: at < 0 ? undefined : at,
      path: 'data',
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HypError('HYP_E_WS_CONTROL', {
      type: kind,
      detail: 'data must be a JSON object',
      path: 'data',
    });
  }
  // control data holds names only (channel, offset, room_id): one that has no UTF-8 form is refused
  const lone = loneSurrogateEscape(data, 0, data.length);
  if (lone >= 0) {
    throw new HypError('HYP_E_WS_CONTROL', {
      type: kind,
      detail: `data holds the lone surrogate ${escapeText(data, lone)}, which has no UTF-8 form, at byte ${lone}`,
      offset: lone,
      path: 'data',
    });
  }
  return value as Record<string, unknown>;
}

/** A name in control data; an error names it by its key path (`data.room_id`). */
function stringField(kind: string, obj: Record<string, unknown>, key: string, required: boolean): string {
  const value = obj[key];
  const path = `data.${key}`;
  if (value === undefined || value === null) {
    if (required) throw new HypError('HYP_E_WS_CONTROL', { type: kind, detail: `"${key}" is missing`, path });
    return '';
  }
  if (typeof value !== 'string')
    throw new HypError('HYP_E_WS_CONTROL', { type: kind, detail: `"${key}" must be a string`, path });
  if (required && value === '')
    throw new HypError('HYP_E_WS_CONTROL', { type: kind, detail: `"${key}" is empty`, path });
  return value;
}

export function decodeJsonChannelRequest(data: Uint8Array, type = 'subscribe'): ChannelRequest {
  const obj = parseObject(type, data);
  return {
    channel: stringField(type, obj, 'channel', true),
    offset: stringField(type, obj, 'offset', false),
  };
}

export function encodeJsonChannelRequest(request: ChannelRequest): Uint8Array {
  const body: Record<string, string> = { channel: request.channel };
  if (request.offset) body.offset = request.offset;
  return utf8Encoder.encode(JSON.stringify(body));
}

export function decodeJsonRoomRequest(data: Uint8Array, type = 'join_room'): RoomRequest {
  return { roomId: stringField(type, parseObject(type, data), 'room_id', true) };
}

export function encodeJsonRoomRequest(request: RoomRequest): Uint8Array {
  return utf8Encoder.encode(JSON.stringify({ room_id: request.roomId }));
}
