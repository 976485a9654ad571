import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { IdleSweeper, type Sweepable } from '../../../../apps/server/tcp/sweeper.js';
import { startService, until } from './helpers.js';

function item(idleMs: number, closed: number[], id = 1000): Sweepable & { id: number; activity: number } {
  return {
    id,
    activity: 0,
    progress() {
      return this.activity;
    },
    idleMs,
    onIdle: () => closed.push(id),
    sweepSlot: -1,
    sweepSeen: 0,
    sweepSince: 0,
  };
}

describe('the idle sweeper (fake clock)', () => {
  it('closes an item only after its counter has stood still for idleMs', () => {
    let now = 0;
    const closed: number[] = [];
    const sweeper = new IdleSweeper(() => now);
    const quiet = item(1000, closed, 1);
    const chatty = item(1000, closed, 2);
    sweeper.add(quiet);
    sweeper.add(chatty);
    for (now = 0; now <= 3000; now += 250) {
      chatty.activity++;
      sweeper.sweep();
    }
    expect(closed).toEqual([quiet.id]);
    expect(sweeper.size).toBe(1);
    sweeper.delete(chatty);
    sweeper.sweep();
  });

  it('holds one timer while anything is watched and none once empty', () => {
    const sweeper = new IdleSweeper();
    const closed: number[] = [];
    const items = Array.from({ length: 1000 }, () => item(60_000, closed));
    for (const i of items) sweeper.add(i);
    expect(sweeper.timers).toBe(1);
    expect(sweeper.interval).toBe(250);
    for (const i of items) sweeper.delete(i);
    expect(sweeper.size).toBe(0);
    sweeper.sweep();
    expect(sweeper.timers).toBe(0);
  });

  it('sweeps often enough for its shortest idle limit', () => {
    const sweeper = new IdleSweeper();
    const a = item(60_000, []);
    const b = item(100, []);
    sweeper.add(a);
    sweeper.add(b);
    expect(sweeper.interval).toBe(25);
    sweeper.delete(a);
    sweeper.delete(b);
    sweeper.sweep();
  });
});

/** Records, for every connection it closes, the idle time it saw and when (real time) it closed it. */
class RecordingSweeper extends IdleSweeper {
  readonly decisions: Array<{ idleForMs: number; at: number }> = [];
  override add(item: Sweepable): void {
    const onIdle = item.onIdle.bind(item);
    item.onIdle = (idleForMs) => {
      this.decisions.push({ idleForMs, at: performance.now() });
      onIdle(idleForMs);
    };
    super.add(item);
  }
}

describe('10,000 idle connections on one service', () => {
  it('are all closed by the sweeper within idle timeout + 1 s, with one timer for all of them', async () => {
    const count = 10_000;
    const idleMs = 3_000;
    // The sweeper's clock stands still while the clients connect (that takes seconds on a
    // loaded 2-core machine), then runs in step with real time from `releasedAt`, so all
    // 10,000 connections start idling together and none closes before the last one opened.
    let frozenAt: number | undefined = performance.now();
    let offset = 0;
    const sweeper = new RecordingSweeper(() => frozenAt ?? performance.now() - offset);
    let releasedAt = 0;
    let closeEvents = 0;
    const { service, port } = await startService(
      async (conn) => {
        for await (const _ of conn) {
        }
      },
      { idle_timeout: `${idleMs}ms`, max_connections: 20_000 },
      {
        onInfo: (_local, _remote, state) => {
          if (state === 'close') closeEvents++;
        },
      },
      { sweeper },
    );
    const clients = fork(fileURLToPath(new URL('./fixtures/idle-clients.mjs', import.meta.url)), [
      String(port),
      String(count),
      '500',
    ]);
    try {
      const [opened] = (await once(clients, 'message')) as [{ type: string; opened: number; failed: number }];
      expect(opened).toMatchObject({ type: 'opened', opened: count, failed: 0 });
      await until(() => service.openConnections() === count, 'all connections accepted');
      expect(sweeper.timers).toBe(1);
      expect(sweeper.size).toBe(count);
      // No timer per connection anywhere in the process (the test runner has a few of its own).
      expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBeLessThan(50);
      releasedAt = performance.now();
      offset = releasedAt - frozenAt!;
      frozenAt = undefined;

      const [closed] = (await once(clients, 'message')) as [{ type: string; closed: number }];
      expect(closed).toMatchObject({ type: 'closed', closed: count });
      await until(() => closeEvents === count, 'server-side close of every connection');

      expect(service.stats.idleCloses).toBe(count);
      expect(sweeper.decisions).toHaveLength(count);
      await until(() => sweeper.timers === 0, 'the sweeper to stop its timer once nothing is left');
      // Never early; every close decided within idle timeout + 1 s, and the sweep that
      // started closing them ran in time. (Destroying 10,000 sockets in that pass takes
      // the machine a further few hundred ms; that is the kernel's and libuv's share.)
      const idle = sweeper.decisions.map((d) => d.idleForMs);
      expect(Math.min(...idle)).toBeGreaterThanOrEqual(idleMs);
      expect(Math.max(...idle)).toBeLessThanOrEqual(idleMs + 1_000);
      expect(Math.min(...sweeper.decisions.map((d) => d.at - releasedAt))).toBeLessThanOrEqual(
        idleMs + 1_000,
      );
    } finally {
      clients.kill();
      await service.close();
    }
  }, 120_000);
});

describe('the idle sweeper list', () => {
  it('keeps every item exactly once through any interleaving of adds, deletes and sweeps', () => {
    let now = 0;
    const closed: number[] = [];
    const sweeper = new IdleSweeper(() => now);
    const items = Array.from({ length: 200 }, (_, i) => item(1000 + (i % 7) * 100, closed, i));
    const watched = new Set<number>();
    for (let step = 0; step < 5000; step++) {
      const it = items[(step * 7919) % items.length]!;
      if (step % 3 === 0) {
        sweeper.delete(it);
        watched.delete(it.id);
      } else {
        sweeper.add(it);
        watched.add(it.id);
      }
      if (step % 50 === 0) {
        now += 400;
        closed.length = 0;
        sweeper.sweep();
        for (const id of closed) watched.delete(id);
      }
      expect(sweeper.size).toBe(watched.size);
    }
    for (const it of items) sweeper.delete(it);
    sweeper.sweep();
    expect(sweeper.timers).toBe(0);
  });
});
