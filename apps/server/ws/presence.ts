/**
 * Room membership across nodes. Each node's memberships are kept apart
 * (node → room → client ids), with a count and an order-independent digest
 * per node, so that a node's part can be checked against what that node
 * announces (`alive`), replaced by its snapshot (`members`), or dropped
 * wholesale when it dies. A client id is a member of a room while at least
 * one node holds it there: the same id may be connected on two nodes.
 *
 * Local joins and leaves are applied directly; other nodes' arrive over the
 * bus. A node that leaves the bus in an orderly way announces every leave
 * first (see Hub.close).
 */

/** What a join or leave changed: nothing, only which nodes hold the client, or the room's member list. */
export type Change = 'none' | 'node' | 'member';

export type Pair = [room: string, clientId: string];

/** A node's share of presence, as it announces it and as others see it. */
export interface NodeSummary {
  count: number;
  /** XOR of `pairHash` over the node's (room, client) pairs: unsigned 32-bit. */
  digest: number;
}

interface NodeView extends NodeSummary {
  rooms: Map<string, Set<string>>;
}

const noMembers: NodeSummary = { count: 0, digest: 0 };

/** FNV-1a over the room, a NUL, the client id (a client id holds no NUL, so the split is unique). */
export function pairHash(room: string, clientId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < room.length; i++) h = Math.imul(h ^ room.charCodeAt(i), 0x01000193);
  h = Math.imul(h, 0x01000193); // the NUL separator
  for (let i = 0; i < clientId.length; i++) h = Math.imul(h ^ clientId.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class Presence {
  /** room → client id → how many nodes hold the client there. */
  private readonly rooms = new Map<string, Map<string, number>>();
  private readonly nodes = new Map<string, NodeView>();
  private pairCount = 0;

  join(room: string, clientId: string, nodeId: string): Change {
    let view = this.nodes.get(nodeId);
    if (!view) {
      view = { rooms: new Map(), count: 0, digest: 0 };
      this.nodes.set(nodeId, view);
    }
    let held = view.rooms.get(room);
    if (!held) {
      held = new Set();
      view.rooms.set(room, held);
    }
    if (held.has(clientId)) return 'none';
    held.add(clientId);
    view.count++;
    view.digest = (view.digest ^ pairHash(room, clientId)) >>> 0;
    let members = this.rooms.get(room);
    if (!members) {
      members = new Map();
      this.rooms.set(room, members);
    }
    const holders = members.get(clientId) ?? 0;
    members.set(clientId, holders + 1);
    if (holders > 0) return 'node';
    this.pairCount++;
    return 'member';
  }

  leave(room: string, clientId: string, nodeId: string): Change {
    const view = this.nodes.get(nodeId);
    const held = view?.rooms.get(room);
    if (!view || !held?.delete(clientId)) return 'none';
    if (held.size === 0) view.rooms.delete(room);
    view.count--;
    view.digest = (view.digest ^ pairHash(room, clientId)) >>> 0;
    if (view.count === 0) this.nodes.delete(nodeId);
    const members = this.rooms.get(room);
    const holders = (members?.get(clientId) ?? 1) - 1;
    if (members && holders > 0) {
      members.set(clientId, holders);
      return 'node';
    }
    members?.delete(clientId);
    if (members?.size === 0) this.rooms.delete(room);
    this.pairCount--;
    return 'member';
  }

  members(room: string): string[] {
    return [...(this.rooms.get(room)?.keys() ?? [])];
  }

  /** (room, client id) memberships, every node's: a client held in a room by two nodes counts once. */
  get memberships(): number {
    return this.pairCount;
  }

  /** The nodes holding at least one membership. */
  nodeIds(): IterableIterator<string> {
    return this.nodes.keys();
  }

  /** Count and digest of what `nodeId` holds, as this view has it. */
  summary(nodeId: string): NodeSummary {
    const view = this.nodes.get(nodeId);
    return view ? { count: view.count, digest: view.digest } : noMembers;
  }

  /** Every (room, client) pair `nodeId` holds. */
  *pairs(nodeId: string): Generator<Pair> {
    const view = this.nodes.get(nodeId);
    if (!view) return;
    for (const [room, held] of view.rooms) for (const clientId of held) yield [room, clientId];
  }

  /** Forgets everything `nodeId` holds; returns the memberships that ended (a leave event is due). */
  dropNode(nodeId: string): Pair[] {
    return this.replace(nodeId, []).left;
  }

  /**
   * Makes `nodeId`'s part exactly `snapshot` (flat: room, client id, room, …).
   * Returns the memberships that began and ended: join and leave events are
   * due for those only, not for pairs that were already right.
   */
  replace(nodeId: string, snapshot: readonly string[]): { joined: Pair[]; left: Pair[] } {
    const want = new Map<string, Set<string>>();
    for (let i = 0; i + 1 < snapshot.length; i += 2) {
      const room = snapshot[i]!;
      let held = want.get(room);
      if (!held) {
        held = new Set();
        want.set(room, held);
      }
      held.add(snapshot[i + 1]!);
    }
    const joined: Pair[] = [];
    const left: Pair[] = [];
    for (const [room, clientId] of [...this.pairs(nodeId)]) {
      if (want.get(room)?.has(clientId)) continue;
      if (this.leave(room, clientId, nodeId) === 'member') left.push([room, clientId]);
    }
    for (const [room, held] of want) {
      for (const clientId of held) {
        if (this.join(room, clientId, nodeId) === 'member') joined.push([room, clientId]);
      }
    }
    return { joined, left };
  }
}

/** What `alive` carries: the origin's own share of presence and its announce interval. */
export interface AliveFacts extends NodeSummary {
  intervalMs: number;
}

interface Peer {
  /** Hub clock (ms) of the last `alive`; before the first, of the last join or leave. */
  seenAt: number;
  /** The origin's announced interval; until it announces one, ours. */
  intervalMs: number;
  /** It has sent `alive`: from then on only `alive` proves it is there. */
  announces: boolean;
  /** When the outstanding `sync` to it was sent. */
  syncAt: number | undefined;
  /** A snapshot being received: its id, the next chunk index, the pairs so far. */
  snapshot: { id: number; next: number; pairs: string[] } | undefined;
}

/** One chunk of a `members` snapshot (bus-event.ts has the wire form). */
export interface SnapshotChunk {
  /** Which snapshot of the origin's the chunk belongs to. */
  snapshot: number;
  /** 0, 1, …: a gap means a chunk was lost. */
  index: number;
  final: boolean;
  /** Flat: room, client id, room, client id, … */
  pairs: string[];
}

/** An `alive` that disagrees with the view: `reset` (it holds nothing: drop its part) or `sync` (ask for a snapshot). */
export type Verdict = 'agree' | 'reset' | 'sync' | 'wait';

/** Missed intervals after which a node holding members is dropped. */
export const missedIntervals = 3;

/**
 * Liveness and repair bookkeeping for the other nodes that hold (or held)
 * room members: when each was last heard from, and the one snapshot request
 * outstanding per node. Decides; the hub acts.
 */
export class Peers {
  private readonly peers = new Map<string, Peer>();

  constructor(private readonly intervalMs: number) {}

  private peer(origin: string, now: number): Peer {
    let p = this.peers.get(origin);
    if (!p) {
      p = {
        seenAt: now,
        intervalMs: this.intervalMs,
        announces: false,
        syncAt: undefined,
        snapshot: undefined,
      };
      this.peers.set(origin, p);
    }
    return p;
  }

  /**
   * A join or leave from `origin`. It counts as a sign of life only until the
   * origin's first `alive` (a node dying before its first one is dropped too);
   * after that a node holding members says so every interval.
   */
  heard(origin: string, now: number): void {
    const p = this.peer(origin, now);
    if (!p.announces) p.seenAt = now;
  }

  /** An `alive` from `origin`, compared with this node's view of it (events from one origin arrive in order). */
  alive(origin: string, now: number, facts: AliveFacts, view: NodeSummary): Verdict {
    const p = this.peer(origin, now);
    p.seenAt = now;
    p.announces = true;
    p.intervalMs = facts.intervalMs > 0 ? facts.intervalMs : this.intervalMs;
    // chunks of one snapshot are sent back to back: one still incomplete at an alive lost a chunk
    p.snapshot = undefined;
    if (facts.count === view.count && facts.digest === view.digest) {
      p.syncAt = undefined;
      return 'agree';
    }
    if (facts.count === 0) return 'reset';
    if (p.syncAt !== undefined && now - p.syncAt < this.window(p)) return 'wait';
    p.syncAt = now;
    return 'sync';
  }

  /**
   * One chunk of a snapshot `origin` sends this node. Returns the whole
   * snapshot on its last chunk; chunks out of order (one was lost) or not
   * asked for are dropped, and the next disagreeing `alive` asks again.
   */
  chunk(origin: string, chunk: SnapshotChunk): string[] | undefined {
    const p = this.peers.get(origin);
    if (!p || p.syncAt === undefined) return undefined;
    if (chunk.index === 0) p.snapshot = { id: chunk.snapshot, next: 0, pairs: [] };
    const s = p.snapshot;
    if (!s || s.id !== chunk.snapshot || s.next !== chunk.index) {
      p.snapshot = undefined;
      return undefined;
    }
    for (const v of chunk.pairs) s.pairs.push(v);
    s.next++;
    if (!chunk.final) return undefined;
    p.snapshot = undefined;
    p.syncAt = undefined;
    return s.pairs;
  }

  /** Nodes not heard from for `missedIntervals` of their interval; they are forgotten here. */
  stale(now: number): string[] {
    const gone: string[] = [];
    for (const [origin, p] of this.peers) {
      if (now - p.seenAt > this.window(p)) gone.push(origin);
    }
    for (const origin of gone) this.peers.delete(origin);
    return gone;
  }

  forget(origin: string): void {
    this.peers.delete(origin);
  }

  get size(): number {
    return this.peers.size;
  }

  private window(p: Peer): number {
    return missedIntervals * Math.max(p.intervalMs, this.intervalMs);
  }
}
