/**
 * Per-IP token bucket for new connections (IPv6 per /64): each address earns
 * `perSecond` tokens a second up to `burst`; a connection costs one.
 * Buckets that have refilled completely carry no information and are
 * dropped by an occasional prune, so memory follows the set of recently
 * active clients, not every address ever seen, and never exceeds
 * `maxAddresses` buckets (least recently seen forgotten first). No timers.
 */

/**
 * The bucket a client address counts against: an IPv4 address as it is
 * (IPv4-mapped IPv6 `::ffff:a.b.c.d` included), an IPv6 address by its /64
 * prefix — one host routinely holds a whole /64 and could otherwise rotate
 * through fresh buckets. Anything unparseable is its own key.
 */
export function clientKey(address: string): string {
  if (!address.includes(':')) return address;
  const zone = address.indexOf('%');
  const text = zone >= 0 ? address.slice(0, zone) : address;
  const halves = text.split('::');
  if (halves.length > 2) return address;
  const part = (s: string | undefined) => (s === undefined || s === '' ? [] : s.split(':'));
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const last = tail.length > 0 ? tail : head;
  const v4 = last.length > 0 && last[last.length - 1]!.includes('.') ? last.pop()! : undefined;
  const groups = v4 === undefined ? 8 : 6;
  const fill = groups - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return address;
  const words = [...head, ...Array<string>(fill).fill('0'), ...tail].map((w) => Number.parseInt(w, 16));
  if (words.some((w) => !(w >= 0 && w <= 0xffff))) return address;
  if (
    v4 !== undefined &&
    words.length === 6 &&
    words[5] === 0xffff &&
    words.slice(0, 5).every((w) => w === 0)
  )
    return v4;
  return `${words
    .slice(0, 4)
    .map((w) => w.toString(16))
    .join(':')}::/64`;
}

interface Bucket {
  tokens: number;
  at: number;
}

const pruneEveryMs = 10_000;
/** Enough for every client of a busy service; a flood from more addresses cannot grow memory past it. */
const defaultMaxAddresses = 100_000;

export class ConnectionRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastPrune: number;

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
    /** Addresses tracked at most; beyond it the least recently seen is forgotten (it gets a full bucket again). */
    readonly maxAddresses: number = defaultMaxAddresses,
  ) {
    if (!(perSecond > 0)) throw new RangeError(`perSecond must be > 0, got ${perSecond}`);
    if (!(burst >= 1)) throw new RangeError(`burst must be >= 1, got ${burst}`);
    if (!(maxAddresses >= 1)) throw new RangeError(`maxAddresses must be >= 1, got ${maxAddresses}`);
    this.lastPrune = now();
  }

  /** Take one token for the client at `address` (bucketed by `clientKey`); false when its bucket is empty. */
  take(address: string): boolean {
    const ip = clientKey(address);
    const now = this.now();
    if (now - this.lastPrune >= pruneEveryMs) this.prune(now);
    const bucket = this.buckets.get(ip);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxAddresses) {
        // Map order is least recently seen first (seen buckets move to the end).
        this.buckets.delete(this.buckets.keys().next().value!);
      }
      this.buckets.set(ip, { tokens: this.burst - 1, at: now });
      return true;
    }
    this.buckets.delete(ip);
    this.buckets.set(ip, bucket);
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Addresses currently tracked. */
  get size(): number {
    return this.buckets.size;
  }

  prune(now: number = this.now()): void {
    this.lastPrune = now;
    const fullAfterMs = (this.burst / this.perSecond) * 1000;
    for (const [ip, bucket] of this.buckets) {
      if (now - bucket.at >= fullAfterMs) this.buckets.delete(ip);
    }
  }
}
