/**
 * `server.limits.send_timeout` for HTTP/2 streams: a stream with answer
 * bytes waiting to go out that make no progress for this long is reset
 * (RST_STREAM `CANCEL`), counted in `hyp_http_send_timeouts_total` and
 * logged as `HYP_E_SEND_TIMEOUT`.
 *
 * The socket watch (stall.ts) cannot see these: nghttp2 holds an answer
 * the peer has granted no flow-control window for (its stream window, or
 * the connection's, left at 0), so the socket has nothing pending, and a
 * peer that keeps the connection alive with PINGs makes it look busy. Such
 * a stream would hold its handler's answer, a concurrency slot and its
 * share of the session's memory for good.
 *
 * Progress is what the stream has been given (slices.ts counts it) less
 * what is still pending (`writableLength`): it grows whenever a write
 * completes, so a slow but steady reader is never cut. A stream's writes
 * are at most 64 KiB each (slices.ts): the timeout must exceed the time the
 * slowest legitimate client takes to read 64 KiB. Checked by the session
 * sweep (Http2Sessions), never per request.
 */
import { constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { internalMissing } from '../node-internals.js';
import { given } from './slices.js';

interface Progress {
  /** `given - writableLength` when progress was last seen. */
  done: number;
  /** When (ms since epoch). */
  since: number;
}

const kProgress = Symbol('hyp.h2.progress');
type Watched = ServerHttp2Stream & { [kProgress]?: Progress | undefined };

/** Node's `session[kState].streams` (id → stream), which it does not expose. */
let kState: symbol | undefined;

export class StreamStallWatch {
  constructor(
    private readonly timeoutMs: number,
    private readonly onStall: (stream: ServerHttp2Stream, pendingBytes: number) => void,
  ) {}

  /** How often `check` is worth running: a quarter of the timeout, 100 ms … 5 s. */
  get every(): number {
    return Math.min(5_000, Math.max(100, Math.floor(this.timeoutMs / 4)));
  }

  /** Reset the streams of `session` whose pending answer has not moved for the timeout. */
  check(session: ServerHttp2Session, now: number): void {
    const streams = streamsOf(session);
    if (streams === undefined) return;
    for (const stream of streams.values() as IterableIterator<Watched>) {
      const pending = stream.writableLength;
      if (pending === 0 || stream.destroyed) {
        stream[kProgress] = undefined;
        continue;
      }
      const done = given(stream) - pending;
      const p = stream[kProgress];
      if (p === undefined || p.done !== done) {
        stream[kProgress] = { done, since: now };
        continue;
      }
      if (now - p.since < this.timeoutMs) continue;
      stream[kProgress] = undefined;
      this.onStall(stream, pending);
      stream.close(constants.NGHTTP2_CANCEL);
    }
  }
}

interface StreamMap {
  values(): IterableIterator<ServerHttp2Stream>;
}

function streamsOf(session: ServerHttp2Session): StreamMap | undefined {
  kState ??= Object.getOwnPropertySymbols(session).find((s) => s.description === 'state');
  // A primordials SafeMap: a Map in all but its prototype chain.
  const streams =
    kState === undefined
      ? undefined
      : (session as unknown as Record<symbol, { streams?: StreamMap } | undefined>)[kState]?.streams;
  if (typeof streams?.values === 'function') return streams;
  internalMissing(
    'Http2Session[kState].streams',
    'server.limits.send_timeout for HTTP/2 streams',
    'a stream whose peer grants no flow-control window holds its answer until the session closes',
  );
  return undefined;
}
