import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codecs } from '../../../../../apps/server/ws/codecs/index.js';
import type { Envelope } from '../../../../../apps/server/ws/envelope.js';
import { isHypError } from '../../../../../supervisor/errors.js';

const golden = JSON.parse(
  readFileSync(new URL('../../../../fixtures/ws/golden.json', import.meta.url), 'utf8'),
) as {
  cases: Array<Record<string, unknown>>;
};

const runs = 10_000;

/** Valid encodings with a few bytes flipped, inserted, or cut: inputs close to real frames. */
function mutated(seeds: Uint8Array[]) {
  return fc
    .tuple(
      fc.constantFrom(...seeds),
      fc.array(
        fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')),
        {
          minLength: 1,
          maxLength: 4,
        },
      ),
      fc.option(fc.nat(), { nil: undefined }),
    )
    .map(([seed, edits, cut]) => {
      const bytes = Array.from(seed);
      for (const [at, value, op] of edits) {
        const i = bytes.length === 0 ? 0 : at % bytes.length;
        if (op === 'set') bytes[i] = value;
        else if (op === 'insert') bytes.splice(i, 0, value);
        else bytes.splice(i, 1);
      }
      return new Uint8Array(cut === undefined ? bytes : bytes.slice(0, cut % (bytes.length + 1)));
    });
}

describe('every decoder, fed hostile bytes, returns an envelope or a HYP_E_WS_DECODE error', () => {
  for (const codec of codecs) {
    it(`${codec.name}: ${runs} random and mutated inputs, no other exception`, () => {
      const seeds = golden.cases.map((c) => new Uint8Array(Buffer.from(c[codec.name] as string, 'hex')));
      let decoded = 0;
      let refused = 0;
      fc.assert(
        fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), mutated(seeds)), (bytes) => {
          try {
            const m = codec.unmarshal(bytes);
            expect(typeof m.type).toBe('string');
            expect(typeof m.timestamp).toBe('bigint');
            expect(m.data).toBeInstanceOf(Uint8Array);
            decoded++;
          } catch (err) {
            if (!isHypError(err, 'HYP_E_WS_DECODE')) throw err;
            expect(err.message).toMatch(new RegExp(`^cannot decode ${codec.name} message: `));
            refused++;
          }
        }),
        { numRuns: runs },
      );
      expect(decoded + refused).toBe(runs);
      expect(refused).toBeGreaterThan(0);
    });
  }

  it('errors name the byte offset where the decoder knows it', () => {
    const cases: Array<[string, Uint8Array, number]> = [
      ['json', new TextEncoder().encode('{"type":"x",}'), 12],
      // the byte of the bad reference (the root offset), not the place beyond the buffer it points to
      ['flatbuffers', new Uint8Array([0xff, 0, 0, 0]), 0],
      ['protobuf', new Uint8Array([0x0a, 9, 1]), 2],
    ];
    for (const [name, bytes, offset] of cases) {
      const codec = codecs.find((c) => c.name === name)!;
      try {
        codec.unmarshal(bytes);
        expect.unreachable();
      } catch (err) {
        expect(isHypError(err, 'HYP_E_WS_DECODE')).toBe(true);
        expect((err as { params: { offset?: number } }).params.offset, name).toBe(offset);
      }
    }
  });
});

// JSON `null` data means "no data" (HypGo writes `"data":null` for empty data), so it cannot round-trip as bytes.
const jsonText = fc
  .json()
  .filter((t) => t !== 'null')
  .map((t) => new TextEncoder().encode(t));
const envelopeArb = (data: fc.Arbitrary<Uint8Array>) =>
  fc.record({
    type: fc.string(),
    channel: fc.string(),
    data,
    timestamp: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
    clientId: fc.string(),
    offset: fc.string(),
  });

describe('round trip', () => {
  for (const codec of codecs) {
    it(`${codec.name}: unmarshal(marshal(m)) equals m`, () => {
      const data = codec.name === 'json' ? jsonText : fc.uint8Array({ maxLength: 64 });
      fc.assert(
        fc.property(envelopeArb(data), (m: Envelope) => {
          const back = codec.unmarshal(codec.marshal(m));
          expect({ ...back, data: Array.from(back.data) }).toEqual({ ...m, data: Array.from(m.data) });
        }),
        { numRuns: 2_000 },
      );
    });
  }
});
