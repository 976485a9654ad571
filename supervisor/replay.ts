/**
 * The pod's replay window (`websocket.security.replay_window`): every
 * worker's hub checks a sealed frame against its own nonce cache first, then
 * claims the frame's nonce here (apps/server/ws/nonce-claims.ts), so a frame
 * replayed to another worker of the pod is refused too. One window per hub
 * (topic) and setting, under the same rule as each hub's own
 * (apps/client/replay.ts): a nonce is remembered for two windows, the cache
 * holds the hub's size per worker, and it fails closed when full.
 */
import { ReplayWindow } from '../apps/client/replay.js';
import type { NonceClaim, NonceClaimReply } from './ipc.js';

/** Distinct windows kept at most: hubs are few; a worker sending many settings gets refusals past it. */
const maxWindows = 64;

export class PodReplayWindows {
  private readonly windows = new Map<string, ReplayWindow>();

  /** `workers`: the pod's worker slots, which size each window. */
  constructor(private readonly workers: () => number) {}

  /** Verdicts for a claim: '' for each frame no worker saw in the window, else why it is refused. */
  claim(m: NonceClaim): NonceClaimReply {
    const window = this.windowFor(m);
    const verdicts =
      window === undefined
        ? m.nonces.map(() => `the pod keeps at most ${maxWindows} replay windows`)
        : m.nonces.map((nonce, i) => window.refusal(nonce, m.stamps[i]!) ?? '');
    return { id: m.id, topic: m.topic, verdicts };
  }

  get size(): number {
    let n = 0;
    for (const w of this.windows.values()) n += w.size;
    return n;
  }

  private windowFor(m: NonceClaim): ReplayWindow | undefined {
    const key = `${m.topic}\u0000${m.windowMs}\u0000${m.maxEntries}`;
    let window = this.windows.get(key);
    if (window !== undefined) return window;
    if (this.windows.size >= maxWindows) return undefined;
    window = new ReplayWindow({
      windowMs: m.windowMs,
      maxEntries: m.maxEntries * Math.max(1, this.workers()),
    });
    this.windows.set(key, window);
    return window;
  }
}
