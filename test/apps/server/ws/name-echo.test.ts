import { describe, expect, it } from 'vitest';
import { HubTestBed, json } from './helpers.js';

/**
 * A name refused as too long may be as long as a message (512 KiB): the
 * error frame names its start and its length, not the whole of it (which it
 * used to send back twice, in the envelope and in the data).
 */

describe('a name refused as too long is not echoed whole', () => {
  const bed = new HubTestBed();

  it('subscribe, join_room and publish: the frame names the first 64 characters and the length', async () => {
    await bed.serve({ maxNameLength: 100 });
    const c = await bed.connect('json');
    const long = 'n'.repeat(100_000);
    c.subscribe(long, '');
    c.join(long);
    c.send({ type: 'publish', channel: long, data: Buffer.from('1') });
    const errors = await c.nextOf('error', 3);
    for (const e of errors) {
      const body = json(e) as { code: string; message: string; channel?: string; room_id?: string };
      expect(body.code).toBe('HYP_E_WS_NAME_TOO_LONG');
      expect(body.message).toMatch(/name of 100000 characters is longer than 100/);
      expect(body.channel ?? body.room_id).toBe(`${'n'.repeat(64)}…`);
      expect(e.channel.length).toBeLessThanOrEqual(65);
    }
    const bytes = c.frames.slice(-3).map((f) => f.bytes.length);
    for (const n of bytes) expect(n).toBeLessThan(1000);
  });

  it('the cut never splits a surrogate pair', async () => {
    await bed.serve({ maxNameLength: 100 });
    const c = await bed.connect('json');
    c.subscribe(`${'a'.repeat(63)}${'😀'.repeat(100)}`, '');
    const [e] = await c.nextOf('error');
    const body = json(e!) as { channel: string };
    expect(body.channel).toBe(`${'a'.repeat(63)}…`);
  });
});
