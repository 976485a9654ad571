/**
 * Session-ticket keys made by the supervisor: 48 random bytes, rotated with
 * the previous key kept for decryption.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { TicketKeys } from '../../supervisor/ipc.js';
import { TicketKeyRotation } from '../../supervisor/tlskeys.js';

describe('TicketKeyRotation', () => {
  it('publishes a 48-byte key at start, synchronously (before the first worker spawns)', () => {
    const published: TicketKeys[] = [];
    const rotation = new TicketKeyRotation(60_000, (k) => published.push(k));
    rotation.start();
    expect(published).toHaveLength(1);
    expect(published[0]!.current).toHaveLength(48);
    expect(published[0]!.previous).toEqual([]);
    rotation.stop();
  });

  it('each rotation makes a new current key and keeps the last one as previous', () => {
    const published: TicketKeys[] = [];
    const rotation = new TicketKeyRotation(0, (k) => published.push(k));
    rotation.start();
    const k1 = published[0]!.current;
    const second = rotation.rotate();
    expect(second.current.equals(k1)).toBe(false);
    expect(second.previous).toEqual([k1]);
    const third = rotation.rotate();
    expect(third.previous).toEqual([second.current]);
    expect(published).toHaveLength(3);
  });

  it('rotates on its schedule', async () => {
    const published: TicketKeys[] = [];
    const rotation = new TicketKeyRotation(30, (k) => published.push(k));
    rotation.start();
    await new Promise((r) => setTimeout(r, 200));
    rotation.stop();
    expect(published.length).toBeGreaterThanOrEqual(2);
  });

  describe('a reloaded ticket_rotation (SIGHUP)', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('from 0 (never) to a period: rotation starts on the new period', () => {
      vi.useFakeTimers();
      const published: TicketKeys[] = [];
      const rotation = new TicketKeyRotation(0, (k) => published.push(k));
      rotation.start();
      rotation.reschedule(1000);
      vi.advanceTimersByTime(3500);
      rotation.stop();
      expect(published).toHaveLength(4);
    });

    it('from a period to 0: rotation stops', () => {
      vi.useFakeTimers();
      const published: TicketKeys[] = [];
      const rotation = new TicketKeyRotation(1000, (k) => published.push(k));
      rotation.start();
      vi.advanceTimersByTime(1500);
      rotation.reschedule(0);
      vi.advanceTimersByTime(5000);
      rotation.stop();
      expect(published).toHaveLength(2);
    });

    it('start() twice with a period of 0 issues one key set, not two', () => {
      const published: TicketKeys[] = [];
      const rotation = new TicketKeyRotation(0, (k) => published.push(k));
      rotation.start();
      rotation.start();
      expect(published).toHaveLength(1);
    });

    it('a stopped rotation is not restarted by a new period', () => {
      vi.useFakeTimers();
      const published: TicketKeys[] = [];
      const rotation = new TicketKeyRotation(0, (k) => published.push(k));
      rotation.start();
      rotation.stop();
      rotation.reschedule(1000);
      vi.advanceTimersByTime(3500);
      expect(published).toHaveLength(1);
    });
  });
});
