import { HypError } from '../../../supervisor/errors.js';
import { type Envelope, emptyBytes, jsonData, nowNs } from './envelope.js';

/**
 * Control message types (the envelope's `type`), HypGo's set plus hyp's
 * `presence` query. Anything else is an application message: it reaches the
 * hub's message callbacks and nothing more.
 */
export const Control = {
  subscribe: 'subscribe',
  unsubscribe: 'unsubscribe',
  joinRoom: 'join_room',
  leaveRoom: 'leave_room',
  publish: 'publish',
  broadcast: 'broadcast',
  presence: 'presence',
} as const;

/** Types the hub sends. */
export const Reply = {
  /** A channel, room or broadcast delivery. */
  message: 'message',
  /** Subscription acknowledged; `offset` is where the client resumes from. */
  subscribed: 'subscribed',
  /** A room's member list or a join/leave event (data JSON). */
  presence: 'presence',
  /** A refused frame or request; data `{"code","message",...}`. */
  error: 'error',
  /**
   * (hyp) A publish or broadcast that carried an `id` was accepted: handed
   * to the channel's history or the bus, so losing the connection no longer
   * loses it. Carries the `channel` and `id` as sent and, for a channel with
   * history, the delivery's `offset`. No data.
   */
  published: 'published',
} as const;

/**
 * The room request a refusal answers (`join_room`, `leave_room`, `presence`): its type, and its
 * room when the request's data holds one. A client with several requests of one room under way
 * (a join, then a member-list request) tells by them which one the hub refused, whatever the
 * reason (a replay claim refused too).
 */
export interface RefusedRoomRequest {
  request: string;
  room_id?: string;
}

/**
 * Error frame for `err`: data is JSON `{"code","message"}` plus the byte
 * offset, key path (`path`), channel or offset the error names. Error data is JSON for every
 * codec, like HypGo's control data. `id`: the publish id of the refused
 * publish, in the envelope and the data (only when the publish carried one).
 * `room`: the room request refused, named in the data (`request`, `room_id`).
 */
export function errorEnvelope(err: unknown, channel = '', id = '', room?: RefusedRoomRequest): Envelope {
  const hyp = err instanceof HypError ? err : new HypError('HYP_E_INTERNAL', {}, { cause: err });
  const body: Record<string, unknown> = { code: hyp.code, message: hyp.message };
  for (const key of ['offset', 'path', 'channel', 'room_id'] as const) {
    if (hyp.params[key] !== undefined) body[key] = hyp.params[key];
  }
  if (room !== undefined) {
    body.request = room.request;
    if (room.room_id !== undefined) body.room_id ??= room.room_id;
  }
  if (id) body.id = id;
  const m: Envelope = {
    type: Reply.error,
    channel,
    data: jsonData(body),
    timestamp: nowNs(),
    clientId: '',
    offset: '',
  };
  if (id) m.id = id;
  return m;
}

/** The acknowledgement of an accepted publish that carried `id`. */
export function publishedEnvelope(channel: string, id: string, offset: string): Envelope {
  return { type: Reply.published, channel, data: emptyBytes, timestamp: nowNs(), clientId: '', offset, id };
}

export function replyEnvelope(type: string, channel: string, body?: unknown, offset = ''): Envelope {
  return {
    type,
    channel,
    data: body === undefined ? emptyBytes : jsonData(body),
    timestamp: nowNs(),
    clientId: '',
    offset,
  };
}
