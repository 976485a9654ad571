/** What the member-list specs watch of a client's `presence` events in one room. */
import type { HypWebSocket } from '../../../apps/client/index.js';

export interface PresenceEvent {
  event: 'join' | 'leave';
  room_id: string;
  client_id: string;
  snapshot?: boolean;
}

/**
 * Applies `ws`'s presence events in `room` to a set, as an application would, and records
 * each one that does not change it (a join of a listed member, a leave of an unlisted one)
 * and each member-list answer.
 */
export function watch(ws: HypWebSocket, room: string) {
  const applied = new Set<string>();
  const events: PresenceEvent[] = [];
  const noOps: PresenceEvent[] = [];
  const answers: string[][] = [];
  ws.on('presence', (m) => {
    if (m.channel !== room) return;
    const body = m.json<PresenceEvent | { room_id: string; members: string[] }>();
    if ('members' in body) {
      answers.push(body.members);
      return;
    }
    events.push(body);
    const changed = body.event === 'join' ? !applied.has(body.client_id) : applied.has(body.client_id);
    if (!changed) noOps.push(body);
    if (body.event === 'join') applied.add(body.client_id);
    else applied.delete(body.client_id);
  });
  return {
    events,
    noOps,
    answers,
    applied: () => [...applied].sort(),
  };
}

export const sorted = (list: readonly string[]) => [...list].sort();
