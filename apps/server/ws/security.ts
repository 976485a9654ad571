import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errorMessage, HypError } from '../../../supervisor/errors.js';
import { ReplayWindow } from '../../client/replay.js';

/**
 * The message security pipeline, HypGo's framing:
 *
 * - AES-256-GCM: `[nonce 12 | ciphertext | tag 16]`
 * - HMAC-SHA256: `[mac 32 | data]`
 * - sign-then-encrypt by default, `Enc(HMAC‖payload)`; encrypt-then-sign
 *   (`HMAC(Enc(payload))‖…`) refuses forgeries before decrypting.
 *
 * Beyond HypGo, both opt-in: key ids for rotation (one leading byte naming
 * the key set; without them, previous key sets are tried after the
 * current one) and a replay guard (timestamp window + a bounded nonce cache).
 */

export const nonceSize = 12;
export const tagSize = 16;
export const macSize = 32;
export const aesKeySize = 32;

export interface KeySet {
  /** Raw 32-byte AES-256-GCM key; absent: no encryption. */
  aesKey?: Uint8Array;
  /** Raw HMAC-SHA256 key; absent: no signature. */
  hmacKey?: Uint8Array;
  /** 0..255; written as the frame's first byte when key ids are on. */
  keyId?: number;
}

export type SecurityFailure = 'decrypt' | 'signature' | 'key_id' | 'replay' | 'decode';

export interface SecurityOptions {
  /** The hub's key set (used to seal; tried first to open). */
  keys: KeySet;
  /** Older key sets still accepted on input during a rotation. */
  previousKeys?: readonly KeySet[];
  /** Default true: Enc(HMAC‖payload). */
  signThenEncrypt?: boolean;
  /** Prefix every sealed frame with the key set's id byte. Default false (HypGo framing). */
  keyIds?: boolean;
}

export function validateKeySet(keys: KeySet, name = 'websocket security'): KeySet {
  for (const [field, what] of [
    ['aesKey', 'AES key'],
    ['hmacKey', 'HMAC key'],
  ] as const) {
    const key = keys[field];
    if (key != null && !(key instanceof Uint8Array)) {
      throw new HypError('HYP_E_WS_KEY', {
        key: `${name} ${what}`,
        detail: `must be bytes (a Uint8Array or Buffer), got ${typeof key}`,
      });
    }
  }
  if (keys.aesKey && keys.aesKey.length !== aesKeySize) {
    throw new HypError('HYP_E_WS_KEY', {
      key: `${name} AES key`,
      detail: `must be exactly ${aesKeySize} bytes (AES-256), got ${keys.aesKey.length}`,
    });
  }
  if (keys.hmacKey && keys.hmacKey.length === 0) {
    throw new HypError('HYP_E_WS_KEY', { key: `${name} HMAC key`, detail: 'is empty' });
  }
  if (keys.keyId !== undefined && (!Number.isInteger(keys.keyId) || keys.keyId < 0 || keys.keyId > 255)) {
    throw new HypError('HYP_E_WS_KEY', {
      key: `${name} key id`,
      detail: `must be 0..255, got ${keys.keyId}`,
    });
  }
  return keys;
}

/**
 * Per-client keys (authorize hook, `client.setKeys`): valid, and at least
 * one key. An empty set would silently turn security off for that client
 * (frames sealed with no key are plaintext), so it is refused: fail closed.
 */
export function validateClientKeys(keys: KeySet, clientId: string): KeySet {
  const name = `client ${clientId}`;
  if (keys === null || typeof keys !== 'object') {
    throw new HypError('HYP_E_WS_KEY', {
      key: `set of ${name}`,
      detail: `must be an object, got ${keys === null ? 'null' : typeof keys}`,
    });
  }
  validateKeySet(keys, name);
  if (!hasKeys(keys)) {
    throw new HypError('HYP_E_WS_KEY', {
      key: `set of ${name}`,
      detail: 'holds neither an AES nor an HMAC key: that client would send and receive plaintext',
    });
  }
  return keys;
}

/** True when `keys` holds a key that sealing would use (`{ aesKey: null }` holds none). */
export function hasKeys(keys: KeySet | undefined): keys is KeySet {
  return keys != null && (Boolean(keys.aesKey) || Boolean(keys.hmacKey));
}

function readKey(file: string, what: string): Uint8Array | undefined {
  if (!file) return undefined;
  try {
    return new Uint8Array(readFileSync(file));
  } catch (err) {
    throw new HypError('HYP_E_WS_KEY', { key: `${what} (${file})`, detail: errorMessage(err) });
  }
}

/** Reads `websocket.security.aes_key_file` / `hmac_key_file` (raw key bytes). */
export function keysFromFiles(aesKeyFile: string, hmacKeyFile: string): KeySet {
  const keys: KeySet = {};
  const aes = readKey(aesKeyFile, 'websocket.security.aes_key_file');
  const hmac = readKey(hmacKeyFile, 'websocket.security.hmac_key_file');
  if (aes) keys.aesKey = aes;
  if (hmac) keys.hmacKey = hmac;
  return validateKeySet(keys);
}

export function encrypt(plaintext: Uint8Array, key: Uint8Array): Uint8Array {
  const nonce = randomBytes(nonceSize);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const out = Buffer.allocUnsafe(nonceSize + plaintext.length + tagSize);
  nonce.copy(out, 0);
  let at = nonceSize + cipher.update(plaintext).copy(out, nonceSize);
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

export function decrypt(sealed: Uint8Array, key: Uint8Array): Uint8Array {
  if (sealed.length < nonceSize + tagSize) {
    throw new HypError('HYP_E_WS_DECRYPT', { detail: `${sealed.length} bytes is shorter than nonce + tag` });
  }
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, nonceSize));
  decipher.setAuthTag(sealed.subarray(sealed.length - tagSize));
  try {
    const head = decipher.update(sealed.subarray(nonceSize, sealed.length - tagSize));
    const tail = decipher.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    throw new HypError('HYP_E_WS_DECRYPT');
  }
}

export function sign(data: Uint8Array, key: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(macSize + data.length);
  createHmac('sha256', key).update(data).digest().copy(out, 0);
  out.set(data, macSize);
  return out;
}

export function verify(signed: Uint8Array, key: Uint8Array): Uint8Array {
  if (signed.length < macSize) throw new HypError('HYP_E_WS_SIGNATURE');
  const data = signed.subarray(macSize);
  const expected = createHmac('sha256', key).update(data).digest();
  if (!timingSafeEqual(expected, signed.subarray(0, macSize))) throw new HypError('HYP_E_WS_SIGNATURE');
  return data;
}

/** The bytes the replay guard remembers a sealed frame by: its GCM nonce, else its MAC. */
export function frameNonce(sealed: Uint8Array, keys: KeySet, signThenEncrypt: boolean): Uint8Array {
  if (keys.aesKey && (signThenEncrypt || !keys.hmacKey)) return sealed.subarray(0, nonceSize);
  if (keys.hmacKey) return sealed.subarray(0, macSize);
  return sealed.subarray(0, nonceSize);
}

export interface Opened {
  payload: Uint8Array;
  /** Unique per sealed frame (GCM nonce or MAC): the replay guard's key. */
  nonce: Uint8Array;
  keys: KeySet;
}

export class Security {
  readonly signThenEncrypt: boolean;
  readonly keyIds: boolean;
  private readonly keys: KeySet;
  private readonly previous: readonly KeySet[];

  constructor(options: SecurityOptions) {
    this.keys = validateKeySet(options.keys);
    this.previous = (options.previousKeys ?? []).map((k) => validateKeySet(k));
    this.signThenEncrypt = options.signThenEncrypt ?? true;
    this.keyIds = options.keyIds ?? false;
    if (!hasKeys(this.keys))
      throw new HypError('HYP_E_WS_KEY', { key: 'websocket security', detail: 'no AES or HMAC key' });
    if (this.keyIds) {
      // the id byte picks one set: a second set with the same id would never open a frame
      const seen = new Set<number>();
      for (const k of [this.keys, ...this.previous]) {
        const id = k.keyId ?? 0;
        if (seen.has(id)) {
          throw new HypError('HYP_E_WS_KEY', {
            key: 'websocket security previous keys',
            detail: `two key sets use key id ${id}${k.keyId === undefined ? ' (the default)' : ''}: with key ids on, each set needs its own`,
          });
        }
        seen.add(id);
      }
    }
  }

  get hubKeys(): KeySet {
    return this.keys;
  }

  /** Seals one outgoing frame with `keys` (default: the hub's). */
  seal(payload: Uint8Array, keys: KeySet = this.keys): Uint8Array {
    let data = payload;
    if (this.signThenEncrypt) {
      if (keys.hmacKey) data = sign(data, keys.hmacKey);
      if (keys.aesKey) data = encrypt(data, keys.aesKey);
    } else {
      if (keys.aesKey) data = encrypt(data, keys.aesKey);
      if (keys.hmacKey) data = sign(data, keys.hmacKey);
    }
    if (!this.keyIds) return data;
    const out = Buffer.allocUnsafe(data.length + 1);
    out[0] = keys.keyId ?? 0;
    out.set(data, 1);
    return out;
  }

  /**
   * Opens one incoming frame. With a per-client `override`, only that key
   * set is accepted. Throws HYP_E_WS_DECRYPT, HYP_E_WS_SIGNATURE (or
   * HYP_E_WS_KEY for an unknown key id); never returns unverified bytes.
   */
  open(frame: Uint8Array, override?: KeySet): Opened {
    const candidates = override ? [override] : [this.keys, ...this.previous];
    let body = frame;
    if (this.keyIds) {
      if (frame.length === 0) throw new HypError('HYP_E_WS_DECRYPT', { detail: 'empty frame' });
      const id = frame[0]!;
      const match = candidates.find((k) => (k.keyId ?? 0) === id);
      if (!match)
        throw new HypError('HYP_E_WS_SIGNATURE', { detail: `unknown key id ${id}`, reason: 'key_id' });
      body = frame.subarray(1);
      return {
        payload: this.openWith(body, match),
        nonce: frameNonce(body, match, this.signThenEncrypt),
        keys: match,
      };
    }
    let failure: unknown;
    for (const keys of candidates) {
      try {
        return {
          payload: this.openWith(body, keys),
          nonce: frameNonce(body, keys, this.signThenEncrypt),
          keys,
        };
      } catch (err) {
        failure ??= err;
      }
    }
    throw failure;
  }

  private openWith(sealed: Uint8Array, keys: KeySet): Uint8Array {
    let data = sealed;
    if (this.signThenEncrypt) {
      if (keys.aesKey) data = decrypt(data, keys.aesKey);
      if (keys.hmacKey) data = verify(data, keys.hmacKey);
    } else {
      if (keys.hmacKey) data = verify(data, keys.hmacKey);
      if (keys.aesKey) data = decrypt(data, keys.aesKey);
    }
    return data;
  }
}

export function failureReason(err: unknown): SecurityFailure {
  if (err instanceof HypError) {
    if (err.code === 'HYP_E_WS_DECRYPT') return 'decrypt';
    if (err.code === 'HYP_E_WS_SIGNATURE') return err.params.reason === 'key_id' ? 'key_id' : 'signature';
    if (err.code === 'HYP_E_WS_REPLAY') return 'replay';
  }
  return 'decode';
}

export interface ReplayGuardOptions {
  /** Messages whose timestamp is further than this from now (either way) are refused. */
  windowMs: number;
  /** Nonces remembered; the oldest are forgotten first. Default 100,000. */
  maxEntries?: number;
  now?: () => number;
}

/**
 * The hub's replay guard: refuses a sealed frame seen before (by nonce) or
 * stamped outside the window, with bounded memory that fails closed when
 * full — the rule of `ReplayWindow`, which the client's guard shares.
 */
/** Nonces a hub's replay guard remembers when the options set no size. */
export const defaultReplayCacheSize = 100_000;

export class ReplayGuard {
  private readonly window: ReplayWindow;

  constructor(options: ReplayGuardOptions) {
    this.window = new ReplayWindow({ ...options, maxEntries: options.maxEntries ?? defaultReplayCacheSize });
  }

  get size(): number {
    return this.window.size;
  }

  /** Throws HYP_E_WS_REPLAY, else records the nonce. `timestampNs` 0 counts as missing. */
  check(nonce: Uint8Array, timestampNs: bigint): void {
    const why = this.window.refusal(nonce, timestampNs);
    if (why !== undefined) throw new HypError('HYP_E_WS_REPLAY', { detail: why });
  }
}
