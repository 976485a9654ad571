/**
 * Session-ticket keys made by the supervisor: 48 random bytes, rotated with
 * the previous key kept for decryption.
 */
import { describe, expect, it } from 'vitest';
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
});
