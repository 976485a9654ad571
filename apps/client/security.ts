/**
 * The hub's security framing with WebCrypto, one code path for browsers and
 * Node (`globalThis.crypto.subtle`): AES-256-GCM `[nonce 12 | ciphertext |
 * tag 16]`, HMAC-SHA256 `[mac 32 | data]`, sign-then-encrypt by default.
 * Verification uses `subtle.verify`, which compares in constant time.
 */

import type { webcrypto } from 'node:crypto';

// Types only (erased): the same WebCrypto API browsers expose.
type SubtleCrypto = webcrypto.SubtleCrypto;
type CryptoKey = webcrypto.CryptoKey;

export interface ClientKeys {
  /** Raw 32-byte AES-256-GCM key. */
  aesKey?: Uint8Array;
  /** Raw HMAC-SHA256 key. */
  hmacKey?: Uint8Array;
  /** Default true: Enc(HMAC‖payload). Must match the hub. */
  signThenEncrypt?: boolean;
  /** Set when the hub uses key ids: the leading byte of every frame. */
  keyId?: number;
  /**
   * Opt-in replay guard for incoming frames (HypWebSocket), like the hub's
   * `websocket.security.replay_window`: a frame without a channel offset
   * (broadcast, room, direct, presence, error, ack) whose nonce was seen or
   * whose timestamp is further than this from now is dropped and reported
   * as HYP_E_WS_REPLAY. Channel deliveries are guarded by their offsets.
   */
  replayWindowMs?: number;
  /** Nonces the replay guard remembers (oldest forgotten first). Default 10,000. */
  replayCacheSize?: number;
}

/** A frame opened: its payload, and the bytes that make it unique (the replay guard's key). */
export interface OpenedFrame {
  payload: Uint8Array;
  /** The GCM nonce, or the MAC when it is the outer layer or the only one. */
  nonce: Uint8Array;
}

const nonceSize = 12;
const macSize = 32;
const tagSize = 16;

export class SecurityError extends Error {
  constructor(
    readonly code: 'HYP_E_WS_DECRYPT' | 'HYP_E_WS_SIGNATURE' | 'HYP_E_WS_KEY' | 'HYP_E_WS_REPLAY',
    message: string,
  ) {
    super(message);
    this.name = 'SecurityError';
  }
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s)
    throw new SecurityError(
      'HYP_E_WS_KEY',
      'WebCrypto (crypto.subtle) is not available here (insecure context?)',
    );
  return s;
}

function ignore(): void {}

/** A Uint8Array (or Buffer), also one made in another realm (iframe, worker). */
function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array || Object.prototype.toString.call(value) === '[object Uint8Array]';
}

function buffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

export class ClientSecurity {
  private readonly aes: Promise<CryptoKey> | undefined;
  private readonly hmac: Promise<CryptoKey> | undefined;
  private readonly signThenEncrypt: boolean;
  private readonly keyId: number | undefined;

  /**
   * Checks the keys synchronously and throws a SecurityError (HYP_E_WS_KEY)
   * for unusable ones: not bytes, an AES key other than 32 bytes, an empty
   * HMAC key, no key at all (every frame would be plaintext), a key id
   * outside 0..255, or no WebCrypto.
   */
  constructor(keys: ClientKeys) {
    if (keys === null || typeof keys !== 'object') {
      throw new SecurityError('HYP_E_WS_KEY', `security keys must be an object, got ${typeof keys}`);
    }
    const { aesKey, hmacKey, keyId } = keys;
    for (const [key, what] of [
      [aesKey, 'AES key'],
      [hmacKey, 'HMAC key'],
    ] as const) {
      if (key != null && !isBytes(key)) {
        throw new SecurityError('HYP_E_WS_KEY', `${what} must be bytes (a Uint8Array), got ${typeof key}`);
      }
    }
    if (aesKey && aesKey.length !== 32) {
      throw new SecurityError('HYP_E_WS_KEY', `AES key must be exactly 32 bytes, got ${aesKey.length}`);
    }
    if (hmacKey && hmacKey.length === 0) throw new SecurityError('HYP_E_WS_KEY', 'HMAC key is empty');
    if (!aesKey && !hmacKey) {
      throw new SecurityError(
        'HYP_E_WS_KEY',
        'security needs an AES or an HMAC key: without one every frame would be plaintext',
      );
    }
    if (keyId !== undefined && (!Number.isInteger(keyId) || keyId < 0 || keyId > 255)) {
      throw new SecurityError('HYP_E_WS_KEY', `key id must be an integer 0..255, got ${keyId}`);
    }
    const s = subtle();
    this.aes = aesKey
      ? s.importKey('raw', buffer(aesKey), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt'])
      : undefined;
    this.hmac = hmacKey
      ? s.importKey('raw', buffer(hmacKey), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
      : undefined;
    // an import that fails anyway is reported by the seal or open that awaits it, never left unhandled here
    this.aes?.catch(ignore);
    this.hmac?.catch(ignore);
    this.signThenEncrypt = keys.signThenEncrypt ?? true;
    this.keyId = keyId;
  }

  /** The length of a frame of `length` bytes once sealed: what it weighs on the wire. */
  sealedLength(length: number): number {
    return (
      length +
      (this.aes ? nonceSize + tagSize : 0) +
      (this.hmac ? macSize : 0) +
      (this.keyId === undefined ? 0 : 1)
    );
  }

  async seal(payload: Uint8Array): Promise<Uint8Array> {
    let data = payload;
    if (this.signThenEncrypt) {
      if (this.hmac) data = await this.sign(data);
      if (this.aes) data = await this.encrypt(data);
    } else {
      if (this.aes) data = await this.encrypt(data);
      if (this.hmac) data = await this.sign(data);
    }
    if (this.keyId === undefined) return data;
    const out = new Uint8Array(data.length + 1);
    out[0] = this.keyId;
    out.set(data, 1);
    return out;
  }

  async open(frame: Uint8Array): Promise<Uint8Array> {
    return (await this.openFrame(frame)).payload;
  }

  /** Opens a frame and names its nonce, as the hub's replay guard takes it (GCM nonce, else the MAC). */
  async openFrame(frame: Uint8Array): Promise<OpenedFrame> {
    let data = frame;
    if (this.keyId !== undefined) {
      if (data[0] !== this.keyId)
        throw new SecurityError('HYP_E_WS_SIGNATURE', `unexpected key id ${data[0]}`);
      data = data.subarray(1);
    }
    const outerIsMac = this.hmac !== undefined && (!this.aes || !this.signThenEncrypt);
    const nonce = data.slice(0, outerIsMac ? macSize : nonceSize);
    if (this.signThenEncrypt) {
      if (this.aes) data = await this.decrypt(data);
      if (this.hmac) data = await this.verify(data);
    } else {
      if (this.hmac) data = await this.verify(data);
      if (this.aes) data = await this.decrypt(data);
    }
    return { payload: data, nonce };
  }

  private async encrypt(plain: Uint8Array): Promise<Uint8Array> {
    const nonce = globalThis.crypto.getRandomValues(new Uint8Array(nonceSize));
    const sealed = new Uint8Array(
      await subtle().encrypt({ name: 'AES-GCM', iv: nonce }, await this.aes!, buffer(plain)),
    );
    const out = new Uint8Array(nonceSize + sealed.length);
    out.set(nonce, 0);
    out.set(sealed, nonceSize);
    return out;
  }

  private async decrypt(sealed: Uint8Array): Promise<Uint8Array> {
    if (sealed.length < nonceSize + tagSize)
      throw new SecurityError('HYP_E_WS_DECRYPT', 'frame shorter than nonce + tag');
    try {
      const iv = sealed.slice(0, nonceSize);
      return new Uint8Array(
        await subtle().decrypt({ name: 'AES-GCM', iv }, await this.aes!, buffer(sealed.subarray(nonceSize))),
      );
    } catch {
      throw new SecurityError('HYP_E_WS_DECRYPT', 'message failed decryption');
    }
  }

  private async sign(data: Uint8Array): Promise<Uint8Array> {
    const mac = new Uint8Array(await subtle().sign('HMAC', await this.hmac!, buffer(data)));
    const out = new Uint8Array(macSize + data.length);
    out.set(mac, 0);
    out.set(data, macSize);
    return out;
  }

  private async verify(signed: Uint8Array): Promise<Uint8Array> {
    if (signed.length < macSize) throw new SecurityError('HYP_E_WS_SIGNATURE', 'frame shorter than the MAC');
    const data = signed.subarray(macSize);
    const ok = await subtle().verify(
      'HMAC',
      await this.hmac!,
      buffer(signed.subarray(0, macSize)),
      buffer(data),
    );
    if (!ok) throw new SecurityError('HYP_E_WS_SIGNATURE', 'message signature does not verify');
    return data;
  }
}
