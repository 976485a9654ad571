/**
 * TLS session-ticket keys, owned by the supervisor: generated here, sent to
 * every worker (`tls-keys`), rotated on `server.tls.ticket_rotation`. The
 * previous key stays valid for decryption, so a ticket issued just before a
 * rotation still resumes (and is renewed under the new key).
 *
 * Workers that each generated their own keys would resume only when the
 * kernel hands the reconnect to the worker that issued the ticket: about 1/N
 * of the time with N workers.
 */
import { randomBytes } from 'node:crypto';
import type { TicketKeys } from './ipc.js';

/** name 16 | HMAC secret 16 | AES key 16, the layout of Node's `ticketKeys`. */
export const ticketKeyBytes = 48;

export function newTicketKey(): Buffer {
  return randomBytes(ticketKeyBytes);
}

export class TicketKeyRotation {
  private keys: TicketKeys | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Between `start()` and `stop()`; a period of 0 has no timer but is still running. */
  private running = false;

  /**
   * @param intervalMs rotation period
   * @param publish called with every key set, first synchronously in `start()`
   * @param keepPrevious how many retired keys stay accepted (default 1)
   */
  constructor(
    private intervalMs: number,
    private readonly publish: (keys: TicketKeys) => void,
    private readonly keepPrevious = 1,
  ) {}

  get current(): TicketKeys | undefined {
    return this.keys;
  }

  get interval(): number {
    return this.intervalMs;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.rotate();
    this.schedule();
  }

  /**
   * A new period (a reloaded `ticket_rotation`), counted from now. The keys
   * stay: tickets already issued keep resuming until rotated out as usual.
   */
  reschedule(intervalMs: number): void {
    if (intervalMs === this.intervalMs) return;
    this.intervalMs = intervalMs;
    if (!this.running) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.schedule();
  }

  private schedule(): void {
    if (this.intervalMs > 0) {
      this.timer = setInterval(() => this.rotate(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Issue a new current key; the old current becomes the first previous key. */
  rotate(): TicketKeys {
    const previous = this.keys ? [this.keys.current, ...this.keys.previous].slice(0, this.keepPrevious) : [];
    this.keys = { current: newTicketKey(), previous };
    this.publish(this.keys);
    return this.keys;
  }

  stop(): void {
    this.running = false;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
