/**
 * Room membership across nodes: room → client id → the node that holds the
 * client. Local joins and leaves are applied directly; other nodes' arrive
 * over the bus. A node that leaves the bus in an orderly way announces every
 * leave first (see Hub.close); `dropNode` forgets a node wholesale.
 */
export class Presence {
  private readonly rooms = new Map<string, Map<string, string>>();

  /** True when the client was not a member yet (a join event is due). */
  join(room: string, clientId: string, nodeId: string): boolean {
    let members = this.rooms.get(room);
    if (!members) {
      members = new Map();
      this.rooms.set(room, members);
    }
    const fresh = !members.has(clientId);
    members.set(clientId, nodeId);
    return fresh;
  }

  /** True when the client was a member through `nodeId` (a leave event is due). */
  leave(room: string, clientId: string, nodeId: string): boolean {
    const members = this.rooms.get(room);
    if (!members || members.get(clientId) !== nodeId) return false;
    members.delete(clientId);
    if (members.size === 0) this.rooms.delete(room);
    return true;
  }

  members(room: string): string[] {
    return [...(this.rooms.get(room)?.keys() ?? [])];
  }

  dropNode(nodeId: string): Array<[room: string, clientId: string]> {
    const dropped: Array<[string, string]> = [];
    for (const [room, members] of this.rooms) {
      for (const [clientId, node] of members) if (node === nodeId) dropped.push([room, clientId]);
    }
    for (const [room, clientId] of dropped) this.leave(room, clientId, nodeId);
    return dropped;
  }
}
