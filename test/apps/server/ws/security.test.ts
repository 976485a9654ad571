import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  failureReason,
  type KeySet,
  keysFromFiles,
  ReplayGuard,
  Security,
} from '../../../../apps/server/ws/security.js';
import { isHypError } from '../../../../supervisor/errors.js';

const aesKey = randomBytes(32);
const hmacKey = randomBytes(32);
const payload = Buffer.from('{"type":"message","data":{"n":1}}');

describe('framing (HypGo-compatible)', () => {
  it('sign-then-encrypt by default: [nonce 12 | Enc(mac 32 | payload) | tag 16]', () => {
    const sealed = Buffer.from(new Security({ keys: { aesKey, hmacKey } }).seal(payload));
    expect(sealed.length).toBe(12 + 32 + payload.length + 16);
    const d = createDecipheriv('aes-256-gcm', aesKey, sealed.subarray(0, 12));
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    const inner = Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
    expect(inner.subarray(0, 32)).toEqual(createHmac('sha256', hmacKey).update(payload).digest());
    expect(inner.subarray(32)).toEqual(payload);
  });

  it('encrypt-then-sign: [mac 32 | nonce 12 | ciphertext | tag 16], mac over the ciphertext frame', () => {
    const sealed = Buffer.from(
      new Security({ keys: { aesKey, hmacKey }, signThenEncrypt: false }).seal(payload),
    );
    expect(sealed.length).toBe(32 + 12 + payload.length + 16);
    expect(sealed.subarray(0, 32)).toEqual(
      createHmac('sha256', hmacKey).update(sealed.subarray(32)).digest(),
    );
  });

  it('HMAC only: [mac 32 | payload]; AES only: [nonce | ciphertext | tag]', () => {
    const signed = Buffer.from(new Security({ keys: { hmacKey } }).seal(payload));
    expect(signed.subarray(32)).toEqual(payload);
    expect(new Security({ keys: { aesKey } }).seal(payload).length).toBe(12 + payload.length + 16);
  });

  it('every mode opens what it sealed', () => {
    for (const keys of [{ aesKey, hmacKey }, { aesKey }, { hmacKey }]) {
      for (const signThenEncrypt of [true, false]) {
        const s = new Security({ keys, signThenEncrypt });
        expect(Buffer.from(s.open(s.seal(payload)).payload)).toEqual(payload);
      }
    }
  });

  it('an AES key that is not 32 bytes is a HYP_E_WS_KEY error naming the size', () => {
    expect(() => new Security({ keys: { aesKey: randomBytes(16) } })).toThrow(/exactly 32 bytes.*got 16/);
    const dir = mkdtempSync(join(tmpdir(), 'hyp-keys-'));
    writeFileSync(join(dir, 'aes'), randomBytes(31));
    writeFileSync(join(dir, 'hmac'), randomBytes(64));
    expect(() => keysFromFiles(join(dir, 'aes'), '')).toThrow(/got 31/);
    expect(keysFromFiles('', join(dir, 'hmac')).hmacKey?.length).toBe(64);
    expect(() => keysFromFiles(join(dir, 'missing'), '')).toThrow(/ENOENT/);
  });
});

function mutate(
  frame: Uint8Array,
  edits: Array<[number, number, 'flip' | 'cut' | 'append' | 'set']>,
): Uint8Array {
  let bytes = Buffer.from(frame);
  for (const [at, value, op] of edits) {
    const i = bytes.length === 0 ? 0 : at % bytes.length;
    if (op === 'flip' && bytes.length > 0) bytes[i]! ^= 1 << (value % 8);
    else if (op === 'set' && bytes.length > 0) bytes[i] = value;
    else if (op === 'cut') bytes = bytes.subarray(0, i);
    else if (op === 'append') bytes = Buffer.concat([bytes, Buffer.from([value])]);
  }
  return bytes;
}

describe('tampering', () => {
  const modes: Array<[string, KeySet, boolean]> = [
    ['sign-then-encrypt', { aesKey, hmacKey }, true],
    ['encrypt-then-sign', { aesKey, hmacKey }, false],
    ['HMAC only', { hmacKey }, true],
    ['AES only', { aesKey }, true],
  ];
  for (const [name, keys, signThenEncrypt] of modes) {
    it(`${name}: 10,000 mutated sealed frames, 0 accepted, 0 crashes`, () => {
      const s = new Security({ keys, signThenEncrypt });
      const sealed = [payload, Buffer.alloc(0), randomBytes(300)].map((p) => s.seal(p));
      let refused = 0;
      fc.assert(
        fc.property(
          fc.constantFrom(...sealed),
          fc.array(
            fc.tuple(
              fc.nat(),
              fc.integer({ min: 0, max: 255 }),
              fc.constantFrom('flip', 'cut', 'append', 'set'),
            ),
            {
              minLength: 1,
              maxLength: 3,
            },
          ),
          (frame, edits) => {
            const bad = mutate(frame, edits as Array<[number, number, 'flip' | 'cut' | 'append' | 'set']>);
            if (Buffer.compare(Buffer.from(bad), Buffer.from(frame)) === 0) return;
            try {
              s.open(bad);
            } catch (err) {
              expect(isHypError(err, 'HYP_E_WS_DECRYPT') || isHypError(err, 'HYP_E_WS_SIGNATURE')).toBe(true);
              refused++;
              return;
            }
            throw new Error(`accepted a mutated frame: ${Buffer.from(bad).toString('hex')}`);
          },
        ),
        { numRuns: 10_000 },
      );
      expect(refused).toBeGreaterThan(9_000);
    });
  }

  it('failure reasons name the stage that refused', () => {
    const s = new Security({ keys: { aesKey, hmacKey }, signThenEncrypt: false });
    const frame = Buffer.from(s.seal(payload));
    frame[40]! ^= 1;
    try {
      s.open(frame);
      expect.unreachable();
    } catch (err) {
      expect(failureReason(err)).toBe('signature');
    }
    try {
      new Security({ keys: { aesKey } }).open(randomBytes(64));
      expect.unreachable();
    } catch (err) {
      expect(failureReason(err)).toBe('decrypt');
    }
  });
});

describe('keys', () => {
  it('a per-client override is the only key set accepted for that client', () => {
    const hub = new Security({ keys: { aesKey, hmacKey } });
    const client: KeySet = { aesKey: randomBytes(32), hmacKey: randomBytes(16) };
    const fromClient = hub.seal(payload, client);
    expect(Buffer.from(hub.open(fromClient, client).payload)).toEqual(payload);
    expect(() => hub.open(fromClient)).toThrow();
    expect(() => hub.open(hub.seal(payload), client)).toThrow();
  });

  it('rotation without key ids: previous key sets still open, new frames use the current one', () => {
    const old: KeySet = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
    const before = new Security({ keys: old }).seal(payload);
    const after = new Security({ keys: { aesKey, hmacKey }, previousKeys: [old] });
    expect(Buffer.from(after.open(before).payload)).toEqual(payload);
    expect(() => new Security({ keys: old }).open(after.seal(payload))).toThrow();
  });

  it('rotation with key ids: the leading byte picks the key set; an unknown id is refused', () => {
    const old: KeySet = { aesKey: randomBytes(32), keyId: 1 };
    const current: KeySet = { aesKey, keyId: 2 };
    const hub = new Security({ keys: current, previousKeys: [old], keyIds: true });
    const sealed = hub.seal(payload);
    expect(sealed[0]).toBe(2);
    expect(hub.open(new Security({ keys: old, keyIds: true }).seal(payload)).keys).toBe(old);
    try {
      hub.open(new Security({ keys: { aesKey, keyId: 9 }, keyIds: true }).seal(payload));
      expect.unreachable();
    } catch (err) {
      expect(failureReason(err)).toBe('key_id');
    }
  });
});

describe('replay guard', () => {
  const ns = (ms: number) => BigInt(ms) * 1_000_000n;

  it('refuses a nonce seen before and a timestamp outside the window', () => {
    let now = 1_000_000;
    const guard = new ReplayGuard({ windowMs: 5_000, now: () => now });
    const s = new Security({ keys: { aesKey } });
    const opened = s.open(s.seal(payload));
    guard.check(opened.nonce, ns(now));
    expect(() => guard.check(opened.nonce, ns(now))).toThrow(/nonce already seen/);
    expect(() => guard.check(randomBytes(12), ns(now - 6_000))).toThrow(/window/);
    expect(() => guard.check(randomBytes(12), ns(now + 6_000))).toThrow(/window/);
    expect(() => guard.check(randomBytes(12), 0n)).toThrow(/no timestamp/);
    // a nonce is held two windows (a frame may be stamped a window ahead of its arrival)
    now += 10_001;
    guard.check(randomBytes(12), ns(now));
    expect(guard.size).toBe(1);
  });

  it('stays bounded under a flood of fresh nonces', () => {
    let now = 1_000_000;
    const guard = new ReplayGuard({ windowMs: 60_000, maxEntries: 1_000, now: () => now });
    for (let i = 0; i < 5_000; i++) guard.check(randomBytes(12), ns(now++));
    expect(guard.size).toBe(1_000);
  });
});
