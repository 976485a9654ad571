/**
 * Requests without a body, the cheap way, with the request stream made whole
 * again for whoever reads it.
 *
 * Node ≥ 24.12 (`optimizeEmptyRequests`, ignored by older Node) hands a
 * request with neither Content-Length nor Transfer-Encoding — no body
 * (RFC 9112 §6.3), which is every GET a browser or load balancer sends —
 * already ended and closed, skipping the readable stream's 'end' and
 * 'close' lifecycle. Measured on Node 26.10 (wrk, hello world, one core):
 * raw node:http serves about 10 % more requests with it, hyp 2–6 %.
 *
 * The catch, which Node documents: such a request never emits 'data', 'end'
 * or 'close'. Code that waits for 'end' after `resume()` waits forever, and
 * `raw-body` refuses it (`stream.not.readable`). hyp's own readers do not
 * care (`readBody` takes an ended request as an empty body), but code that
 * is handed Node's request — `c.req` in a handler, every app under
 * `app.mount` — was written against the usual stream. So the first time
 * `c.req` is handed out, `reviveEmptyBody` turns the request back into what
 * Node without the option would have given: a stream whose body has arrived
 * (empty) and whose 'end' and 'close' are still to come, emitted when it is
 * read or, unread, when the response finishes (Node's `_dump`). Requests
 * only hyp's own code touches (`c.text`, `c.json`, `c.body()`, routing,
 * headers, cookies, query) never pay for the revival.
 *
 * The revival sets Node's own stream fields back (there is no public API for
 * it). The option is only used where a probe shows the revival works
 * (`emptyRequestOptions`); `empty-requests.test.ts` checks every pattern
 * above against a request Node handled without the option, on each Node the
 * suite runs under.
 */
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { internalMissing } from '../node-internals.js';

/** The fields Node's `_dumpAndCloseReadable` and `_read` set, which `reviveEmptyBody` sets back. */
interface DumpedRequest {
  _dumped: boolean;
  _consuming: boolean;
  _readableState: { endEmitted: boolean; destroyed: boolean; closed: boolean; closeEmitted: boolean };
  _dumpAndCloseReadable?: () => void;
}

let options: { optimizeEmptyRequests?: true } | undefined;

/**
 * Spread into `http.createServer` options: the option, on a Node that has it
 * and whose requests `reviveEmptyBody` can revive (tried once, on a request
 * with no socket behind it). A Node without the option gets nothing; a Node
 * with it whose stream fields moved is reported (HYP_W_NODE_INTERNALS) and
 * gets nothing either, so requests keep Node's usual stream.
 */
export function emptyRequestOptions(): { optimizeEmptyRequests?: true } {
  options ??= probeEmptyRequests(new IncomingMessage(new Socket()));
  return options;
}

/** @internal What `emptyRequestOptions` gives, tried on `req` (a fresh request; specs pass their own). */
export function probeEmptyRequests(req: IncomingMessage): { optimizeEmptyRequests?: true } {
  const dumped = req as unknown as DumpedRequest;
  if (typeof dumped._dumpAndCloseReadable !== 'function') return {};
  dumped._dumpAndCloseReadable();
  const handedOver = req.readableEnded && req.destroyed;
  if (handedOver) reviveEmptyBody(req);
  if (handedOver && !req.readableEnded && !req.destroyed && !dumped._dumped)
    return { optimizeEmptyRequests: true };
  internalMissing(
    'IncomingMessage stream fields _dumped, _consuming, _readableState.{endEmitted,destroyed,closed,closeEmitted}',
    "Node's optimizeEmptyRequests",
    'requests without a body take the usual, slower stream lifecycle',
  );
  return {};
}

/**
 * Whether Node handed `req` over ended without its message being complete:
 * only the option does that. Node's usual stream ends after the parser has
 * seen the whole message, and never before the 'request' listener returns;
 * a request cut short is destroyed without ending.
 */
export function handedOverEnded(req: IncomingMessage): boolean {
  return req.readableEnded && !req.complete;
}

/** Make a request handed over ended (see `handedOverEnded`) a readable stream with an empty body. */
export function reviveEmptyBody(req: IncomingMessage): void {
  const dumped = req as unknown as DumpedRequest;
  const state = dumped._readableState;
  dumped._dumped = false;
  dumped._consuming = false;
  state.endEmitted = false;
  state.destroyed = false;
  state.closed = false;
  state.closeEmitted = false;
}
