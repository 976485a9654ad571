/**
 * The admin HTTP server (default :9090), separate from application ports:
 * GET /health, GET /ready, POST|GET /drain, POST /restart, GET /metrics,
 * GET /status. POST routes need loopback or the bearer token from
 * `admin.token_file`.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { clientErrorListener } from './client-error.js';
import { parseAddress } from './config/units.js';
import { HypError } from './errors.js';
import type { Logger } from './log.js';
import type { AdminShedReason } from './metrics.js';
import type { Supervisor } from './supervisor.js';

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

function bearerMatches(req: IncomingMessage, tokenFile: string): boolean {
  if (!tokenFile) return false;
  const header = req.headers.authorization ?? '';
  if (!header.startsWith('Bearer ')) return false;
  let token: string;
  try {
    token = readFileSync(tokenFile, 'utf8').trim();
  } catch {
    return false;
  }
  const given = Buffer.from(header.slice(7).trim());
  const wanted = Buffer.from(token);
  return token.length > 0 && given.length === wanted.length && timingSafeEqual(given, wanted);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function problem(res: ServerResponse, err: HypError): void {
  json(res, err.status, err.toProblem());
}

/** Methods of each admin route, for 405 answers (keep in step with `route`). */
const allowedMethods: Record<string, string> = {
  '/health': 'GET, HEAD',
  '/ready': 'GET, HEAD',
  '/status': 'GET',
  '/drain': 'GET, POST',
  '/restart': 'POST',
  '/metrics': 'GET',
};

function query(url: string | undefined): string {
  const at = (url ?? '').indexOf('?');
  return at < 0 ? '' : (url ?? '').slice(at + 1);
}

/** `?wait=` of POST /restart: true, false, or undefined for a value it does not understand. */
function waitParam(url: string): boolean | undefined {
  const values = new URLSearchParams(query(url)).getAll('wait');
  if (values.length === 0) return false;
  if (values.length > 1) return undefined;
  const value = values[0];
  if (value === '1' || value === 'true') return true;
  if (value === '0' || value === 'false') return false;
  return undefined;
}

export function statusBody(sup: Supervisor) {
  const now = Date.now();
  const view = (w: ReturnType<Supervisor['currentWorkers']>[number]) => ({
    id: w.id,
    pid: w.pid,
    state: w.state,
    generation: w.generation,
    uptime_s: Math.round(w.uptimeMs(now) / 100) / 10,
    connections: w.load.connections,
    inflight: w.load.inflight,
    ws_clients: w.load.wsClients,
    rss_bytes: w.load.rss,
    loop_delay_ms: Math.round(w.load.loopDelayMs * 10) / 10,
  });
  const all = [...sup.workers.values()];
  return {
    state: sup.state,
    generation: sup.generation,
    ready: sup.readiness().ready,
    pid: process.pid,
    workers: all.filter((w) => w.generation === sup.generation).map(view),
    other_workers: all.filter((w) => w.generation !== sup.generation).map(view),
    listeners: sup.listeners.map((l) => ({ name: l.name, addr: l.addr, port: l.port, fd: l.fd })),
    last_roll: sup.lastRoll ?? null,
    problem: sup.readiness().ready ? null : sup.readiness().reason,
  };
}

export function drainBody(sup: Supervisor) {
  return {
    state: sup.state,
    phase: sup.drainPhase,
    started_at: sup.drainStartedAt ? new Date(sup.drainStartedAt).toISOString() : null,
    elapsed_ms: sup.drainStartedAt ? Date.now() - sup.drainStartedAt : 0,
    delay: sup.config.drain.delay,
    timeout: sup.config.drain.timeout,
    workers_remaining: sup.workers.size,
    inflight: [...sup.workers.values()].reduce((n, w) => n + w.load.inflight, 0),
    endpoints: endpointsBody(sup),
  };
}

/** drain.endpoints.service as the watch sees it: null without one (or before ready). */
function endpointsBody(sup: Supervisor) {
  const view = sup.endpointsView();
  if (view === undefined) return null;
  return {
    service: view.service,
    namespace: view.namespace,
    pod: view.pod,
    state: view.state,
    left_at: view.state === 'left' ? new Date(view.at).toISOString() : null,
    cause: view.state === 'unknown' ? view.cause : null,
  };
}

/**
 * Fixed limits of the admin server against slow or hostile peers (README,
 * "Signals and admin endpoints"). Node's defaults (headers 60 s, request
 * 300 s, checked every 30 s, no connection cap) let 3000 half-sent requests
 * hold 3024 of the supervisor's descriptors, which it also needs to spawn
 * workers and hold listeners.
 */
export const adminLimits = {
  headersTimeoutMs: 5000,
  requestTimeoutMs: 10_000,
  /** How often Node checks the two timeouts above: they bite within this. */
  checkIntervalMs: 1000,
  keepAliveTimeoutMs: 5000,
  /** Node's default; set so that the 431 answer can name it. */
  maxHeaderSize: 16_384,
  /**
   * Open connections beyond which each new one closes the oldest that is not
   * being answered (half-sent or idle), so a probe still gets through a flood.
   */
  maxConnections: 256,
  /**
   * Open connections the admin server never exceeds: at this count a new
   * connection closes the oldest not being answered (or whose answer the
   * peer is not reading) at once, or is itself closed when every open one is
   * being answered. The cap above is enforced two polls late, and answers in
   * progress are spared by it; this bounds the descriptors in between.
   */
  maxOpen: 512,
  /** An answer the peer has not taken whole for this long (bytes still queued) is closed with its connection. */
  answerStallMs: 10_000,
  /**
   * Requests one connection may have waiting for their answers (HTTP/1.1
   * pipelining); the next closes it. Node parses every request of a read at
   * once and the admin server answers each: 1500 pipelined /metrics on each of
   * 200 connections held 859 MB in the supervisor.
   */
  maxPipelined: 4,
  /**
   * Bytes that answers not yet taken by their peers may hold: the distinct
   * /metrics bodies they refer to (scrapes of one rendering share its
   * Buffer) plus each answer's own part. A new answer that would take the
   * total past it closes the connections with the oldest unread answers
   * first. The 1 s reuse of a rendering and the 10 s stall limit bound them
   * by count only: one unread scrape every 2.3 s (each a rendering of its
   * own) held 5 bodies of 41 MB at once, the supervisor going from 202 to
   * 629 MB. A fixed 64 MiB, like the other limits here: a worker near
   * `maxSeriesPerWorker` serves about 10 MB, so a pod's body fits with room
   * for a second scrape, and no reader pays for it (an answer read at a
   * pace that ends it within `answerStallMs` is spared, the newest is served
   * however large): only answers left unread are closed.
   */
  maxHeldBytes: 64 * 2 ** 20,
  /**
   * A /metrics body is written this much at a time, each slice once the
   * last has reached the kernel: how much of its answer a peer took is then
   * known, for the budget above to tell a reader from a peer that takes none.
   */
  answerSliceBytes: 2 ** 20,
} as const;

/** An answer that holds bytes until its peer took them: the body it may share with others, its own bytes, and how the peer takes them. */
interface HeldAnswer {
  body: Buffer;
  own: number;
  /** performance.now() when the socket buffers were first full, the rest of it left to the peer's reading. */
  backlogAt?: number;
  /** Bytes left to send then. */
  left: number;
  /** Bytes the peer took since. */
  taken: number;
}

/** The warning logged (at most every 10 s) when the admin server closes connections. */
const reasonMessages: Record<AdminShedReason, string> = {
  cap: 'admin connections over the cap: closed the oldest not being answered',
  ceiling: `admin connections at the ceiling (${adminLimits.maxOpen}): closed one at accept`,
  stalled: `admin answer not read by the peer for ${adminLimits.answerStallMs} ms: connection closed`,
  pipelined: `admin connection with over ${adminLimits.maxPipelined} requests waiting for answers: closed`,
  budget: `admin answers unread by their peers over ${adminLimits.maxHeldBytes} bytes: closed the oldest`,
};

export class AdminServer {
  readonly server: Server;
  /** Open connections, oldest first (a Set keeps insertion order). */
  private readonly open = new Set<Socket>();
  /**
   * Connections with requests being answered, and how many (pipelined
   * requests are answered in order): shed only when the peer does not read
   * the answer (`stalledSince`).
   */
  private readonly answering = new Map<Socket, number>();
  /** Answering connections with bytes of an answer queued: since when (performance.now()). */
  private readonly stalledSince = new Map<Socket, number>();
  private stallTimer: NodeJS.Timeout | undefined;
  /** Connections that had a request answered (keep-alive clients, e.g. Prometheus): shed last. */
  private readonly served = new WeakSet<Socket>();
  /** Connections a sweep has seen before they were served: shed at the next sweep. */
  private readonly swept = new WeakSet<Socket>();
  /** Answers holding bytes their peers have not taken, per connection (a Map keeps the order their first was admitted). */
  private readonly held = new Map<Socket, Set<HeldAnswer>>();
  /** How many held answers refer to each body: a body counts once, however many share it. */
  private readonly bodyRefs = new Map<Buffer, number>();
  /** Bytes the held answers keep: their distinct bodies plus their own parts. */
  private heldBytes = 0;
  private shedTotal = 0;
  private sweepScheduled = false;
  private shedLoggedAt = 0;

  constructor(
    private readonly sup: Supervisor,
    private readonly log: Logger,
  ) {
    this.server = createServer(
      {
        headersTimeout: adminLimits.headersTimeoutMs,
        requestTimeout: adminLimits.requestTimeoutMs,
        connectionsCheckingInterval: adminLimits.checkIntervalMs,
        keepAliveTimeout: adminLimits.keepAliveTimeoutMs,
        maxHeaderSize: adminLimits.maxHeaderSize,
      },
      (req, res) => {
        const socket = req.socket;
        // Closed for pipelining: the parser still hands over the rest of the read.
        if (socket.destroyed) return;
        const waiting = (this.answering.get(socket) ?? 0) + 1;
        if (waiting > adminLimits.maxPipelined) {
          this.shed([socket], 'pipelined');
          return;
        }
        this.answering.set(socket, waiting);
        this.served.add(socket);
        res.once('close', () => this.answered(socket));
        this.route(req, res).catch((err: unknown) => {
          this.log.error({ err }, 'admin request failed');
          if (!res.headersSent) problem(res, new HypError('HYP_E_INTERNAL'));
        });
      },
    );
    this.server.on('connection', (socket: Socket) => this.track(socket));
    this.server.on(
      'clientError',
      clientErrorListener({
        maxHeaderSize: adminLimits.maxHeaderSize,
        maxHeaderSetting: 'admin server',
        timeoutMessage: `request headers did not arrive within ${adminLimits.headersTimeoutMs} ms, or the request within ${adminLimits.requestTimeoutMs} ms`,
        log: this.log,
        logPrefix: 'admin: ',
        lingerMs: 1000,
      }),
    );
    // Runtime errors of the listening socket (EMFILE on accept, …): an
    // 'error' event without a listener would throw and take the supervisor down.
    this.server.on('error', (err) => {
      if (this.server.listening) this.log.error({ err }, 'admin server error');
    });
  }

  listen(addr: string): Promise<AddressInfo> {
    const parsed = parseAddress(addr);
    if (!parsed) throw new HypError('HYP_E_ADDRESS_INVALID', { addr, detail: 'admin.addr' });
    return new Promise((resolve, reject) => {
      const onListenError = (err: Error) =>
        reject(new HypError('HYP_E_LISTEN', { name: 'admin', addr, detail: err.message }));
      this.server.once('error', onListenError);
      this.server.listen({ host: parsed.host, port: parsed.port }, () => {
        this.server.off('error', onListenError);
        this.stallTimer ??= setInterval(() => this.shedStalled(), adminLimits.checkIntervalMs).unref();
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Count a new connection; beyond the cap, schedule a sweep that closes the
   * excess among connections not being answered, oldest first: half-sent
   * requests, then connections that sent nothing, then idle keep-alives that
   * were served before. The sweep runs after the next poll of the event loop,
   * once the connections accepted in this batch have had their first read: a
   * probe that sent its request is being answered by then, not shed with the
   * flood accepted around it. One whose request has not arrived whole is
   * spared once, until the next sweep two polls later. Refusing the newest instead
   * (net.Server's maxConnections) would refuse the kubelet's probe for as
   * long as a flood holds the cap. At `maxOpen` the oldest is closed at
   * once, so a burst accepted in one poll cannot hold more descriptors.
   */
  private track(socket: Socket): void {
    if (this.open.size >= adminLimits.maxOpen) {
      const oldest = this.oldestSheddable();
      // Every open one is being answered: the new connection is the one closed.
      this.shed([oldest ?? socket], 'ceiling');
      if (oldest === undefined) return;
    }
    this.open.add(socket);
    socket.once('close', () => {
      this.open.delete(socket);
      this.answering.delete(socket);
      this.stalledSince.delete(socket);
      this.releaseAll(socket);
    });
    if (this.open.size > adminLimits.maxConnections) this.scheduleSweep();
  }

  /** The oldest connection not being answered, else the oldest whose answer is queued unread; none when all are being answered. */
  private oldestSheddable(): Socket | undefined {
    let stalled: Socket | undefined;
    for (const s of this.open) {
      if (!this.answering.has(s)) return s;
      if (stalled === undefined && s.writableLength > 0) stalled = s;
    }
    return stalled;
  }

  private answered(socket: Socket): void {
    const left = (this.answering.get(socket) ?? 1) - 1;
    if (left > 0) this.answering.set(socket, left);
    else this.answering.delete(socket);
    // The next answer's bytes get their own allowance.
    this.stalledSince.delete(socket);
  }

  /** Close connections whose answer has had bytes queued, unread by the peer, for `answerStallMs`. */
  private shedStalled(): void {
    const now = performance.now();
    const stalled: Socket[] = [];
    for (const s of this.answering.keys()) {
      if (s.writableLength === 0) {
        this.stalledSince.delete(s);
        continue;
      }
      const since = this.stalledSince.get(s);
      if (since === undefined) this.stalledSince.set(s, now);
      else if (now - since >= adminLimits.answerStallMs) stalled.push(s);
    }
    if (stalled.length > 0) this.shed(stalled, 'stalled');
    // Answers written since the last sweep may be unread: over the cap, they go first.
    if (this.open.size > adminLimits.maxConnections) this.scheduleSweep();
  }

  private scheduleSweep(): void {
    if (this.sweepScheduled) return;
    this.sweepScheduled = true;
    // The first immediate runs after the poll that accepted; the second after
    // the next poll, which reads what the new connections sent.
    setImmediate(() =>
      setImmediate(() => {
        this.sweepScheduled = false;
        this.sweep();
      }),
    );
  }

  private sweep(): void {
    const excess = this.open.size - adminLimits.maxConnections;
    if (excess <= 0) return;
    // Oldest first within each class; an answer the peer is reading is never cut.
    const halfSent: Socket[] = [];
    const silent: Socket[] = [];
    const idle: Socket[] = [];
    const stalled: Socket[] = [];
    let graced = 0;
    for (const s of this.open) {
      if (this.answering.has(s)) {
        if (s.writableLength > 0 && stalled.length < excess) stalled.push(s);
        continue;
      }
      if (!this.served.has(s) && !this.swept.has(s)) {
        // Not served at its first sweep: the rest of its request may be on
        // the wire. Judged at the next sweep, two polls later.
        this.swept.add(s);
        graced++;
        continue;
      }
      const bucket = this.served.has(s) ? idle : s.bytesRead > 0 ? halfSent : silent;
      if (bucket.length < excess) bucket.push(s);
    }
    this.shed([...halfSent, ...silent, ...idle, ...stalled].slice(0, excess), 'cap');
    if (graced > 0 && this.open.size > adminLimits.maxConnections) this.scheduleSweep();
  }

  /**
   * Take on an answer that holds `body` (shared with any other answer of
   * the same rendering) and `own` bytes of its own until its peer took them.
   * Past `maxHeldBytes`, first close other connections whose answers are
   * not being read, oldest first, as far as that frees bytes.
   */
  private admit(socket: Socket, body: Buffer, own: number): HeldAnswer {
    const adds = (this.bodyRefs.has(body) ? 0 : body.length) + own;
    if (this.heldBytes + adds > adminLimits.maxHeldBytes) this.shedOverBudget(socket, body, adds);
    const answer: HeldAnswer = { body, own, left: body.length + own, taken: 0 };
    const answers = this.held.get(socket) ?? new Set<HeldAnswer>();
    this.held.set(socket, answers.add(answer));
    const refs = this.bodyRefs.get(body) ?? 0;
    this.bodyRefs.set(body, refs + 1);
    this.heldBytes += (refs === 0 ? body.length : 0) + own;
    return answer;
  }

  private release(socket: Socket, answer: HeldAnswer): void {
    const answers = this.held.get(socket);
    if (!answers?.delete(answer)) return;
    if (answers.size === 0) this.held.delete(socket);
    const refs = (this.bodyRefs.get(answer.body) ?? 1) - 1;
    if (refs > 0) this.bodyRefs.set(answer.body, refs);
    else {
      this.bodyRefs.delete(answer.body);
      this.heldBytes -= answer.body.length;
    }
    this.heldBytes -= answer.own;
  }

  private releaseAll(socket: Socket): void {
    for (const answer of this.held.get(socket) ?? []) this.release(socket, answer);
  }

  /**
   * Is the peer taking this answer at a pace that ends it within the stall
   * limit, counted from when the socket buffers first filled (what they
   * took at once is no sign of a reader), or within `graceMs` of that? The
   * kernel grows its buffers for a while after (on loopback by several MB):
   * a peer that reads nothing passes for a reader until that growth falls
   * behind the pace, about 2 s with a 41 MB answer. The cap and the ceiling
   * do not ask: there, a small answer the buffers end up taking whole kept
   * connections a flood should lose.
   */
  private beingRead(answer: HeldAnswer, now: number, graceMs: number): boolean {
    if (answer.backlogAt === undefined) return true;
    const since = now - answer.backlogAt;
    return since < graceMs || answer.taken * adminLimits.answerStallMs >= answer.left * since;
  }

  /** Is an answer on this connection being read (`beingRead`)? */
  private reading(socket: Socket, now: number, graceMs: number): boolean {
    for (const answer of this.held.get(socket) ?? []) if (this.beingRead(answer, now, graceMs)) return true;
    return false;
  }

  /**
   * Close the connections with the oldest answers not being read, as many as
   * it takes for `adds` more bytes to fit the budget: only those whose
   * closing frees bytes (a body the new answer shares stays held).
   */
  private shedOverBudget(socket: Socket, body: Buffer, adds: number): void {
    const now = performance.now();
    const refs = new Map(this.bodyRefs);
    let held = this.heldBytes;
    const victims: Socket[] = [];
    /** How many of the victims it takes to free the bodies they free. */
    let freeing = 0;
    for (const [s, answers] of this.held) {
      if (held + adds <= adminLimits.maxHeldBytes) break;
      if (s === socket || s.destroyed) continue;
      // A second to start reading: a scrape just answered is not cut for the budget.
      if (this.reading(s, now, adminLimits.checkIntervalMs)) continue;
      victims.push(s);
      for (const a of answers) {
        held -= a.own;
        const left = (refs.get(a.body) ?? 1) - 1;
        refs.set(a.body, left);
        if (left === 0 && a.body !== body) {
          held -= a.body.length;
          freeing = victims.length;
        }
      }
    }
    // Those after the last that freed a body would free only their own few KB.
    const closed = victims.slice(0, freeing);
    for (const s of closed) this.releaseAll(s);
    this.shed(closed, 'budget');
  }

  /** Close connections, count them in hyp_admin_connections_shed_total{reason}, and warn at most every 10 s. */
  private shed(victims: Socket[], reason: AdminShedReason): void {
    if (victims.length === 0) return;
    for (const s of victims) {
      s.destroy();
      this.open.delete(s);
    }
    this.shedTotal += victims.length;
    this.sup.metrics.adminShed.inc({ reason }, victims.length);
    const now = Date.now();
    if (now - this.shedLoggedAt >= 10_000) {
      this.shedLoggedAt = now;
      this.log.warn(
        {
          shed: this.shedTotal,
          reason,
          open: this.open.size,
          max: adminLimits.maxConnections,
          ceiling: adminLimits.maxOpen,
        },
        reasonMessages[reason],
      );
    }
  }

  close(): Promise<void> {
    clearInterval(this.stallTimer);
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private allowed(req: IncomingMessage): boolean {
    return isLoopback(req.socket.remoteAddress) || bearerMatches(req, this.sup.config.admin.token_file);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const sup = this.sup;
    switch (`${req.method} ${path}`) {
      case 'GET /health':
      case 'HEAD /health':
        return json(res, 200, { status: 'ok', state: sup.state });
      case 'GET /ready':
      case 'HEAD /ready': {
        const { ready, reason } = sup.readiness();
        return ready
          ? json(res, 200, { status: 'ready', generation: sup.generation })
          : json(res, 503, {
              status: 'not ready',
              reason,
              ...new HypError('HYP_E_NOT_READY', { reason }).toProblem(),
            });
      }
      case 'GET /status':
        return json(res, 200, statusBody(sup));
      case 'GET /drain':
        return json(res, 200, drainBody(sup));
      case 'POST /drain':
        if (!this.allowed(req)) return this.forbid(req, res);
        this.log.info({ from: req.socket.remoteAddress }, 'drain requested over admin API');
        void sup.drain('POST /drain');
        return json(res, 202, drainBody(sup));
      case 'POST /restart': {
        if (!this.allowed(req)) return this.forbid(req, res);
        if (sup.state === 'draining' || sup.state === 'stopped') {
          return problem(res, new HypError('HYP_E_CONFLICT', { detail: 'supervisor is draining' }));
        }
        const wait = waitParam(req.url ?? '');
        if (wait === undefined) {
          return problem(
            res,
            new HypError('HYP_E_BAD_REQUEST', {
              detail: `query parameter wait must be 1, true, 0 or false, got ${JSON.stringify(new URLSearchParams(query(req.url)).getAll('wait').join('&'))}`,
            }),
          );
        }
        const roll = sup.rollGeneration('POST /restart');
        if (!wait) return json(res, 202, { accepted: true, from_generation: sup.generation });
        const result = await roll;
        if (result.ok) return json(res, 200, result);
        // The documented shape ({ok, generation, error: detail}) plus the catalog's code and message.
        const failed = new HypError('HYP_E_GENERATION_FAILED', {
          generation: result.generation + 1,
          detail: result.error ?? 'unknown',
        });
        return json(res, 500, { ...result, code: failed.code, message: failed.message });
      }
      case 'GET /metrics': {
        // The workers' part is one Buffer shared by the scrapes of a rendering
        // (and of the second after it): an answer queued unread holds a
        // reference, where a string body is copied per answer.
        const { contentType, own, workers } = await sup.metrics.scrape(sup, this.log);
        const socket = req.socket;
        // Closed while the workers were asked: nothing to hold.
        if (socket.destroyed) return;
        const head = Buffer.from(own);
        const answer = this.admit(socket, workers, head.length);
        res.once('close', () => this.release(socket, answer));
        res.writeHead(200, { 'content-type': contentType, 'content-length': head.length + workers.length });
        return this.sendSliced(res, answer, head, workers);
      }
      default: {
        const allow = allowedMethods[path ?? ''];
        if (allow !== undefined) {
          const err = new HypError('HYP_E_METHOD_NOT_ALLOWED', { method: req.method, path });
          res.setHeader('allow', allow);
          return problem(res, err);
        }
        return json(res, 404, new HypError('HYP_E_NOT_FOUND', { method: req.method, path }).toProblem());
      }
    }
  }

  /**
   * Write `head` and `body` a slice at a time, the next once the socket
   * buffers took the last. Once they were first full, what they take is
   * what the peer read: counted in `answer.taken`.
   */
  private sendSliced(res: ServerResponse, answer: HeldAnswer, head: Buffer, body: Buffer): void {
    /** Where the next slice of the body starts; -1 before the head. */
    let at = -1;
    /** The slice queued when the socket buffers were full: taken once they drain. */
    let queued = 0;
    const pump = () => {
      answer.taken += queued;
      queued = 0;
      while (!res.destroyed) {
        const sent = at < 0 ? 0 : head.length + at;
        const slice = at < 0 ? head : body.subarray(at, at + adminLimits.answerSliceBytes);
        at = at < 0 ? 0 : at + slice.length;
        if (at >= body.length) {
          res.end(slice);
          // The last slice did not fit the socket buffers: the rest is the peer's to read.
          if (answer.backlogAt === undefined && res.writableLength > 0) {
            answer.backlogAt = performance.now();
            answer.left = head.length + body.length - sent;
          }
          return;
        }
        if (res.write(slice)) {
          if (answer.backlogAt !== undefined) answer.taken += slice.length;
          continue;
        }
        if (answer.backlogAt === undefined) {
          answer.backlogAt = performance.now();
          answer.left = head.length + body.length - sent;
        }
        queued = slice.length;
        return void res.once('drain', pump);
      }
    };
    pump();
  }

  private forbid(req: IncomingMessage, res: ServerResponse): void {
    this.log.warn(
      // The path alone: a query string may carry what a caller meant as a credential.
      { from: req.socket.remoteAddress, method: req.method, path: (req.url ?? '/').split('?')[0] },
      'admin action refused: not loopback, no valid token',
    );
    problem(res, new HypError('HYP_E_FORBIDDEN'));
  }
}
