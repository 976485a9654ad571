import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ClientSecurity,
  type HypErrorFrame,
  HypWebSocket,
  SecurityError,
} from '../../../apps/client/index.js';
import { eventually, type Served, serveHub } from '../server/ws/helpers.js';

let served: Served | undefined;
const open: HypWebSocket[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  await served?.close();
  served = undefined;
  vi.restoreAllMocks();
});

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('client keys are checked at construction', () => {
  it('an empty HMAC key throws a SecurityError from the constructor (no unhandled rejection later)', () => {
    const err = thrownBy(
      () => new HypWebSocket('ws://127.0.0.1:1/ws', { security: { hmacKey: new Uint8Array(0) } }),
    );
    expect(err).toBeInstanceOf(SecurityError);
    expect((err as SecurityError).code).toBe('HYP_E_WS_KEY');
    expect((err as Error).message).toMatch(/HMAC key/);
  });

  it('a key set without any key, a non-byte key or a bad key id is refused the same way', () => {
    for (const keys of [
      {},
      { aesKey: 'x'.repeat(32) as unknown as Uint8Array },
      { aesKey: randomBytes(16) },
      { hmacKey: randomBytes(32), keyId: 256 },
      { hmacKey: randomBytes(32), keyId: 1.5 },
    ]) {
      const err = thrownBy(() => new ClientSecurity(keys));
      expect(err, JSON.stringify(Object.keys(keys))).toBeInstanceOf(SecurityError);
      expect((err as SecurityError).code).toBe('HYP_E_WS_KEY');
    }
  });
});

describe('sealing failures', () => {
  it('a frame that fails to seal is reported for that message only; later sends still go out', async () => {
    const keys = { hmacKey: randomBytes(32) };
    served = await serveHub({ security: { keys } });
    const got: string[] = [];
    served.hub.onMessage((_c, m) => {
      if (m.type === 'publish') got.push(Buffer.from(m.data).toString());
    });
    const c = new HypWebSocket(served.url, { security: keys, reconnect: { enabled: false } });
    open.push(c);
    const errors: HypErrorFrame[] = [];
    c.on('error', (e) => errors.push(e));
    await c.connect();
    vi.spyOn(ClientSecurity.prototype, 'seal').mockRejectedValueOnce(new Error('WebCrypto fell over'));
    c.publish('news', 'lost');
    c.publish('news', 'second');
    c.publish('news', 'third');
    await eventually(() => got.length === 2, 3_000);
    expect(got).toEqual(['"second"', '"third"']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'HYP_E_WS_SEAL', channel: 'news' });
    expect(errors[0]!.message).toMatch(/WebCrypto fell over/);
  });
});
