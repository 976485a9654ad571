import { describe, expect, it } from 'vitest';
import { Receiver } from 'ws';
import { framePayload, prepareFrame } from '../../../../apps/server/ws/frame.js';

function parse(frame: Buffer): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve, reject) => {
    const receiver = new Receiver({ isServer: false });
    receiver.on('message', (data: Buffer, binary: boolean) => resolve({ data, binary }));
    receiver.on('error', reject);
    receiver.write(frame);
  });
}

describe('prepared frames', () => {
  for (const size of [0, 125, 126, 65_535, 65_536, 200_000]) {
    it(`a ${size}-byte payload frames as ws's receiver expects (7-, 16- or 64-bit length)`, async () => {
      const payload = Buffer.alloc(size, 7);
      for (const binary of [true, false]) {
        const frame = prepareFrame(payload, binary);
        const parsed = await parse(frame);
        expect(parsed.binary).toBe(binary);
        expect(parsed.data.equals(payload)).toBe(true);
        expect(framePayload(frame).equals(payload)).toBe(true);
      }
    });
  }
});
