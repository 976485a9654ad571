/**
 * Session-ticket keys inside a worker: the supervisor's current key issues
 * tickets, the previous keys still decrypt them (and a ticket under an old
 * key is renewed under the current one).
 *
 * Node's public `server.setTicketKeys()` holds exactly one key, so a rotation
 * would turn every outstanding ticket into a full handshake. OpenSSL's ticket
 * key callback supports several keys; Node wires it to the secure context's
 * `onticketkeycallback` once `enableTicketKeyCallback()` is called (the hook
 * Node's own test-https-resume-after-renew uses). We use that hook when the
 * running Node has it, and fall back to `setTicketKeys(current)` otherwise:
 * resumption still works across workers, only a rotation costs one full
 * handshake per client. See docs/tls.md.
 */
import { randomBytes } from 'node:crypto';
import type { Server as TlsServer } from 'node:tls';
import type { TicketKeys } from '../../../supervisor/ipc.js';

const partBytes = 16;

/** The native secure-context handle behind `server._sharedCreds.context`. */
interface NativeContext {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, encrypt: boolean) => unknown[];
}

interface Key {
  name: Buffer;
  hmac: Buffer;
  aes: Buffer;
}

// OpenSSL ticket callback results (node's TicketKeyCallback passes them through).
const notFound = 0;
const ok = 1;
const okRenew = 2;
const zeros = Buffer.alloc(partBytes);
const unknownKey: unknown[] = [notFound, zeros, zeros];

/** A 48-byte key as a Buffer (a plain Uint8Array is copied into one: `.equals()` is needed in the callback). */
function toKey(key: unknown): Buffer {
  if (!(key instanceof Uint8Array))
    throw new TypeError(`a session-ticket key is 48 bytes, got ${key === null ? 'null' : typeof key}`);
  if (key.length !== 48) throw new RangeError(`a session-ticket key is 48 bytes, got ${key.length}`);
  return Buffer.isBuffer(key) ? key : Buffer.from(key);
}

function split(key: Buffer): Key {
  return { name: key.subarray(0, 16), hmac: key.subarray(16, 32), aes: key.subarray(32, 48) };
}

function nativeContext(server: TlsServer): NativeContext | undefined {
  return (server as unknown as { _sharedCreds?: { context?: NativeContext } })._sharedCreds?.context;
}

export class TicketKeyRing {
  private keys: Key[] = [];
  private raw: TicketKeys | undefined;
  /** 'callback': current + previous keys; 'single': Node's one-key API only. */
  mode: 'none' | 'callback' | 'single' = 'none';

  get current(): TicketKeys | undefined {
    return this.raw;
  }

  /**
   * Replace the key set. Throws (TypeError, RangeError) on anything but
   * `{ current, previous[] }` of 48-byte keys, keeping the keys it had.
   */
  update(keys: TicketKeys): void {
    const given = keys as unknown as { current?: unknown; previous?: unknown } | null | undefined;
    if (typeof given !== 'object' || given === null || !Array.isArray(given.previous))
      throw new TypeError('session-ticket keys must be { current, previous: [] }');
    const current = toKey(given.current);
    const previous = given.previous.map(toKey);
    this.keys = [current, ...previous].map(split);
    this.raw = { current, previous };
  }

  /** Install the keys on the server's current secure context (call again after setSecureContext). */
  apply(server: TlsServer): void {
    if (!this.raw) return;
    server.setTicketKeys(this.raw.current);
    const context = nativeContext(server);
    if (context && typeof context.enableTicketKeyCallback === 'function') {
      context.onticketkeycallback = this.onTicketKey;
      context.enableTicketKeyCallback();
      this.mode = 'callback';
    } else {
      this.mode = 'single';
    }
  }

  private readonly onTicketKey = (name: Buffer, _iv: Buffer, encrypt: boolean): unknown[] => {
    const keys = this.keys;
    if (encrypt) {
      const k = keys[0] as Key;
      return [ok, k.hmac, k.aes, k.name, randomIv()];
    }
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as Key;
      if (k.name.equals(name)) return [i === 0 ? ok : okRenew, k.hmac, k.aes];
    }
    return unknownKey;
  };
}

function randomIv(): Buffer {
  return randomBytes(partBytes);
}
