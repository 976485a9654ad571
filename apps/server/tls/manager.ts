/**
 * TLS for the HTTP listener: hardened server options (TLS 1.2 minimum, AEAD
 * ECDHE suites only, server cipher order, ALPN), the session-id cache, the
 * supervisor's ticket keys, and certificate hot reload — the files are
 * watched and swapped in with `setSecureContext` for new connections; a
 * broken replacement keeps the old context, logs HYP_E_TLS_RELOAD and counts
 * `hyp_tls_reload_failures_total`.
 */
import { constants, createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { TlsOptions, Server as TlsServer } from 'node:tls';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { TlsConfig } from '../../../supervisor/config/schema.js';
import { errorMessage, HypError } from '../../../supervisor/errors.js';
import type { TicketKeys } from '../../../supervisor/ipc.js';
import type { Logger } from '../../../supervisor/log.js';
import {
  checkTlsMaterial,
  readTlsMaterial,
  type TlsMaterial,
  tlsReadClock,
} from '../../../supervisor/tlscheck.js';
import { tlsFallback, tlsReloaded } from './fallback.js';
import { TlsSessionCache } from './sessioncache.js';
import { TicketKeyRing } from './ticketkeys.js';
import { FileWatch } from './watch.js';

/**
 * TLS 1.3 suites (all AEAD), then the seed's TLS 1.2 list: ECDHE key
 * exchange with AES-GCM or CHACHA20-POLY1305 only — no CBC, no RSA key
 * exchange, no SHA-1 MACs.
 */
export const cipherList = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Lifetime of a resumable session (tickets and session ids), as the seed's cache TTL. */
const sessionTimeoutSeconds = 24 * 60 * 60;

export interface TlsManagerOptions {
  config: TlsConfig;
  /** Config key path, for error messages (`server.tls`). */
  at: string;
  /** ALPN protocols offered, in server preference order. */
  alpn: string[];
  /** TLS handshake must finish within this (slowloris on the handshake). */
  handshakeTimeoutMs: number;
  registry?: Registry | undefined;
  log?: Logger | undefined;
  /** Quiet period after a file event before reloading (default 200 ms). */
  debounceMs?: number;
  /** How long files caught mid-rotation (a key that does not match, a file missing) wait for the rest (default 5 s). */
  pairWaitMs?: number;
}

/** A rotation writing the certificate and the key one after the other: time allowed between the two. */
const defaultPairWaitMs = 5000;

function reloadFailures(registry: Registry | undefined): Counter<'listener'> | undefined {
  if (!registry) return undefined;
  const name = 'hyp_tls_reload_failures_total';
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<'listener'>;
  return new Counter({
    name,
    help: 'TLS certificate reloads refused (the previous certificate kept serving), by listener (server.tls, tcp.<name>.tls)',
    labelNames: ['listener'],
    registers: [registry],
  });
}

/**
 * Not-after time of the certificate each TLS listener serves. A pod's
 * /metrics shows the earliest among its workers (a worker whose reload was
 * refused still serves the old one).
 */
function expiryGauge(registry: Registry | undefined): Gauge<'listener'> | undefined {
  if (!registry) return undefined;
  const name = 'hyp_tls_certificate_expiry_timestamp_seconds';
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge<'listener'>;
  return new Gauge({
    name,
    help: 'Not-after time (Unix seconds) of the certificate each TLS listener serves; the earliest among workers',
    labelNames: ['listener'],
    aggregator: 'min',
    registers: [registry],
  });
}

export class TlsManager {
  readonly sessionCache = new TlsSessionCache();
  readonly ticketKeys = new TicketKeyRing();
  private material: TlsMaterial;
  private server: TlsServer | undefined;
  private watch: FileWatch | undefined;
  private readonly failures: Counter<'listener'> | undefined;
  private readonly expiry: Gauge<'listener'> | undefined;

  /**
   * Reads the files once; throws HYP_E_TLS_FILE / HYP_E_TLS_MISMATCH, unless
   * the supervisor handed over a last good pair for this listener
   * (fallback.ts): then that pair serves until the files are fixed.
   */
  constructor(private readonly opts: TlsManagerOptions) {
    this.failures = reloadFailures(opts.registry);
    // Present at 0 from the start, so an alert on its increase sees the first failure.
    this.failures?.inc({ listener: opts.at }, 0);
    this.expiry = expiryGauge(opts.registry);
    this.material = this.initialMaterial();
    this.servedState = materialState(this.material);
    this.observeValidity();
  }

  private initialMaterial(): TlsMaterial {
    const { config, at } = this.opts;
    try {
      return readTlsMaterial(config, at);
    } catch (err) {
      const fallback = tlsFallback(at);
      if (fallback === undefined) throw err;
      let material: TlsMaterial;
      try {
        material = checkTlsMaterial(fallback, config, at);
      } catch {
        throw err;
      }
      // As a refused reload: counted, and the same broken files are not reported again.
      this.refusedState = filesState(config);
      this.failures?.inc({ listener: at });
      const fellBack = new HypError('HYP_E_TLS_FALLBACK', {
        at,
        detail: errorMessage(err),
        fingerprint: material.leaf.fingerprint256,
        not_after: material.leaf.validTo,
      });
      this.opts.log?.error({ code: fellBack.code, err: fellBack }, fellBack.message);
      return material;
    }
  }

  /**
   * Export the served certificate's expiry; warn (HYP_W_TLS_CERT_VALIDITY)
   * when it is already expired or not valid yet. It is served all the same:
   * the pair is sound, and refusing it would leave nothing to serve.
   */
  private observeValidity(): void {
    const leaf = this.material.leaf;
    const notAfter = Date.parse(leaf.validTo);
    const notBefore = Date.parse(leaf.validFrom);
    this.expiry?.set({ listener: this.opts.at }, Math.floor(notAfter / 1000));
    const now = Date.now();
    const state = now > notAfter ? 'expired' : now < notBefore ? 'not valid yet' : undefined;
    if (!state) return;
    const warning = new HypError('HYP_W_TLS_CERT_VALIDITY', {
      file: this.opts.config.cert_file,
      key: `${this.opts.at}.cert_file`,
      state,
      not_before: leaf.validFrom,
      not_after: leaf.validTo,
    });
    this.opts.log?.warn({ code: warning.code, not_after: leaf.validTo }, warning.message);
  }

  /** Secure context options for the current material. */
  private contextOptions(m: TlsMaterial): TlsOptions {
    const c = this.opts.config;
    return {
      cert: m.cert,
      key: m.key,
      ca: m.ca,
      minVersion: c.min_version,
      ciphers: cipherList,
      honorCipherOrder: true,
      sessionTimeout: sessionTimeoutSeconds,
      sessionIdContext: sessionIdContext(this.opts.at, c, m.ca),
      secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
    };
  }

  /** Options for `tls.createServer`. */
  serverOptions(): TlsOptions {
    const c = this.opts.config;
    return {
      ...this.contextOptions(this.material),
      ALPNProtocols: this.opts.alpn,
      requestCert: c.client_auth !== 'none',
      rejectUnauthorized: c.client_auth === 'require',
      handshakeTimeout: this.opts.handshakeTimeoutMs,
    };
  }

  /** The certificate being served (for logs and tests). */
  get certificate(): TlsMaterial['leaf'] {
    return this.material.leaf;
  }

  /** Take charge of a TLS server: session cache, ticket keys, file watch. */
  attach(server: TlsServer): void {
    this.server = server;
    this.sessionCache.attach(server);
    this.ticketKeys.apply(server);
    if (this.opts.config.watch) {
      const c = this.opts.config;
      const files = [c.cert_file, c.key_file, c.ca_file].filter((f) => f !== '');
      this.watch = new FileWatch(files, this.opts.debounceMs ?? 200, () => this.reload());
    }
  }

  /**
   * New keys from the supervisor (IPC). Malformed ones are logged as
   * HYP_E_TLS_TICKET_KEYS and the keys in use kept: never a throw, which in
   * the worker's message handler would be an unhandled rejection. A listener
   * with `share_ticket_keys: false` keeps its own: the supervisor sends its
   * keys to every worker when any listener shares them.
   */
  setTicketKeys(keys: TicketKeys): void {
    if (!this.opts.config.share_ticket_keys) return;
    try {
      this.ticketKeys.update(keys);
    } catch (err) {
      const refused = new HypError('HYP_E_TLS_TICKET_KEYS', { detail: errorMessage(err) });
      this.opts.log?.error({ code: refused.code, err: refused }, refused.message);
      return;
    }
    if (this.server) this.ticketKeys.apply(this.server);
  }

  /**
   * Re-read the files; when they changed and are valid, serve them to new
   * connections. Returns true when a new certificate was installed.
   */
  reload(): boolean {
    const server = this.server;
    if (!server) return false;
    const state = filesState(this.opts.config);
    // The bytes served: nothing to parse, install or report. The watch fires
    // for any change in the files' directories, a log file's too: in a busy
    // one, every 2 s. Files back to the served pair also end a wait for the
    // rest of a rotation and forget the last refused state.
    if (state === this.servedState) {
      this.refusedState = undefined;
      this.endPairWait();
      return false;
    }
    // Files exactly as they were last refused: nothing new to say.
    if (state === this.refusedState) return false;
    let next: TlsMaterial;
    // Before the read: the supervisor orders the reports of all workers by it.
    const readAt = tlsReadClock();
    try {
      next = readTlsMaterial(this.opts.config, this.opts.at);
      if (
        next.cert.equals(this.material.cert) &&
        next.key.equals(this.material.key) &&
        sameCa(next, this.material)
      ) {
        return false;
      }
      // Node gives a new context fresh random ticket keys: without the
      // supervisor's (installed below), keep this worker's own, so
      // outstanding tickets still resume.
      const own = this.ticketKeys.current ? {} : { ticketKeys: server.getTicketKeys() };
      server.setSecureContext({ ...this.contextOptions(next), ...own });
    } catch (err) {
      if (midRotation(err) && this.awaitPair(state, err)) return false;
      this.refusedState = state;
      this.refused(err);
      return false;
    }
    this.refusedState = undefined;
    this.endPairWait();
    this.material = next;
    this.servedState = materialState(next);
    this.ticketKeys.apply(server);
    this.observeValidity();
    this.opts.log?.info(
      {
        file: this.opts.config.cert_file,
        fingerprint: next.leaf.fingerprint256,
        not_after: next.leaf.validTo,
      },
      'TLS certificate reloaded',
    );
    tlsReloaded(
      this.opts.at,
      { cert: next.cert, key: next.key, ...(next.ca ? { ca: next.ca } : {}) },
      readAt,
    );
    return true;
  }

  /** Files caught mid-rotation, waiting for the rest (`filesState`, timer until it is over). */
  private pairWait: { state: string; timer: NodeJS.Timeout | undefined } | undefined;

  /**
   * A certificate and key that do not match, or a file that is missing,
   * are most often a rotation half done: `cp` of the certificate, then of
   * the key; a file removed, then written again. The first time a state is
   * seen, the old pair keeps serving and nothing is refused for
   * `pairWaitMs`: the next file's event reloads meanwhile. Then the same
   * state is refused as any broken one. True while waiting.
   */
  private awaitPair(state: string, err: unknown): boolean {
    if (this.pairWait?.state === state) return this.pairWait.timer !== undefined;
    this.endPairWait();
    const waitMs = this.opts.pairWaitMs ?? defaultPairWaitMs;
    const wait: { state: string; timer: NodeJS.Timeout | undefined } = { state, timer: undefined };
    wait.timer = setTimeout(() => {
      wait.timer = undefined;
      this.reload();
    }, waitMs);
    wait.timer.unref();
    this.pairWait = wait;
    const c = this.opts.config;
    this.opts.log?.info(
      { cert_file: c.cert_file, key_file: c.key_file, wait_ms: waitMs },
      `TLS files caught mid-rotation (${errorMessage(err)}): waiting for the rest, the previous pair keeps serving`,
    );
    return true;
  }

  private endPairWait(): void {
    if (this.pairWait?.timer) clearTimeout(this.pairWait.timer);
    this.pairWait = undefined;
  }

  /** `filesState` of the pair being served (`materialState`): files still equal to it need no reload. */
  private servedState: string;

  /** `filesState` of the files last refused, until a reload succeeds. */
  private refusedState: string | undefined = undefined;

  private refused(err: unknown): void {
    const c = this.opts.config;
    // The file to blame: the one HYP_E_TLS_FILE names, the key on a mismatch.
    let file = c.cert_file;
    if (err instanceof HypError && err.code === 'HYP_E_TLS_MISMATCH') file = c.key_file;
    else if (err instanceof HypError && typeof err.params.file === 'string') file = err.params.file;
    const reload = new HypError('HYP_E_TLS_RELOAD', {
      file,
      detail: err instanceof HypError ? err.message : errorMessage(err),
    });
    this.failures?.inc({ listener: this.opts.at });
    this.opts.log?.error({ code: reload.code, err: reload }, reload.message);
  }

  close(): void {
    this.endPairWait();
    this.watch?.close();
    this.watch = undefined;
  }
}

/**
 * OpenSSL's session-id context: a session (ticket or session id) resumes
 * only where it is the same. A resumed session skips the client-certificate
 * request, and Node reports a resumed TLS 1.3 session without a certificate
 * as `authorized`. So the context names the listener (`at`: the HTTP
 * listener and each TCP service share the supervisor's ticket keys) and its
 * client-certificate policy: the mode and the CA bundle's bytes. A session
 * from a `none` service cannot open a `require` one, and a replaced CA
 * bundle (or a reload that changes `client_auth`) sends every client
 * through a full handshake, verified against the new bundle. It is derived,
 * not random: every worker and generation agrees, so resumption still works
 * whichever worker accepts. 32 bytes, OpenSSL's limit.
 */
function sessionIdContext(at: string, c: TlsConfig, ca: Buffer | undefined): string {
  const hash = createHash('sha256').update(at).update('\0').update(c.client_auth);
  if (c.client_auth !== 'none' && ca) hash.update('\0').update(ca);
  return hash.digest('hex').slice(0, 32);
}

/** A key that does not match its certificate, or a file missing: what a rotation in progress looks like. */
function midRotation(err: unknown): boolean {
  if (!(err instanceof HypError)) return false;
  if (err.code === 'HYP_E_TLS_MISMATCH') return true;
  return err.code === 'HYP_E_TLS_FILE' && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function sameCa(a: TlsMaterial, b: TlsMaterial): boolean {
  if (!a.ca || !b.ca) return a.ca === b.ca;
  return a.ca.equals(b.ca);
}

function digest(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('base64');
}

/** Larger than any PEM bundle (readTlsMaterial refuses such a file, naming its size). */
const maxPemBytes = 16 * 1024 * 1024;

/**
 * The certificate, key and CA files' contents (hashed) or read errors: what
 * a reload would see. Only regular files of at most 16 MiB are read, as
 * readTlsMaterial does: opening a named pipe would block the event loop
 * until a writer came.
 */
function filesState(c: TlsConfig): string {
  return [c.cert_file, c.key_file, c.ca_file]
    .map((file) => {
      if (file === '') return '';
      try {
        const info = statSync(file);
        if (!info.isFile()) return `not a regular file ${info.dev}:${info.ino}`;
        if (info.size > maxPemBytes) return `${info.size} bytes ${info.dev}:${info.ino}`;
        return digest(readFileSync(file));
      } catch (err) {
        return (err as NodeJS.ErrnoException).code ?? errorMessage(err);
      }
    })
    .join('|');
}

/** `filesState` of files holding exactly the bytes of `m` (no CA file: ''). */
function materialState(m: TlsMaterial): string {
  return [digest(m.cert), digest(m.key), m.ca ? digest(m.ca) : ''].join('|');
}
