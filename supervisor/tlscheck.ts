/**
 * Certificate and key checks, run by the supervisor before any worker starts
 * (bad files stop `hyp run` with exit 2, naming the file) and by workers when
 * a watched file changes (a bad replacement is refused, the old one stays).
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Config, TlsConfig } from './config/schema.js';
import { errorMessage, HypError } from './errors.js';

/** PEM material read from the files a TLS config names. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
  /** The leaf certificate, for logs (subject, fingerprint, expiry). */
  leaf: X509Certificate;
}

/** Larger than any certificate chain or CA bundle (the full Mozilla bundle is about 250 KiB). */
const maxPemBytes = 16 * 1024 * 1024;

function readPem(file: string, key: string): Buffer {
  if (!file)
    throw new HypError('HYP_E_TLS_FILE', { file: '(empty)', key, detail: 'required when TLS is enabled' });
  try {
    // Checked before opening: reading a FIFO without a writer blocks for
    // ever, and a pipe (`--set …=<(cat cert)`) can be read only once, by the
    // supervisor, never by its workers.
    const info = statSync(file);
    if (!info.isFile()) {
      throw new HypError('HYP_E_TLS_FILE', {
        file,
        key,
        detail:
          'not a regular file (a pipe, device or directory); every worker reads it, and again on each reload',
      });
    }
    if (info.size > maxPemBytes) {
      throw new HypError('HYP_E_TLS_FILE', {
        file,
        key,
        detail: `${info.size} bytes, more than any PEM bundle (limit ${maxPemBytes})`,
      });
    }
    return readFileSync(file);
  } catch (err) {
    if (err instanceof HypError) throw err;
    throw new HypError('HYP_E_TLS_FILE', { file, key, detail: errorMessage(err) }, { cause: err });
  }
}

function parseCertificate(pem: Buffer, file: string, key: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new HypError(
      'HYP_E_TLS_FILE',
      { file, key, detail: `not a PEM certificate (${errorMessage(err)})` },
      { cause: err },
    );
  }
}

const beginLine = /-----BEGIN ([A-Z0-9 ]+)-----/g;

/**
 * Check every certificate block of a PEM file, not only the first: OpenSSL
 * stops reading a CA bundle at the first block it cannot decode, silently,
 * dropping that CA and all after it. Blocks of other kinds (a key in a
 * combined file) and text between blocks (bundle comments) are skipped.
 * Throws HYP_E_TLS_FILE naming the block (1-based) and its byte offset.
 */
function checkCertificateBlocks(pem: Buffer, file: string, key: string): void {
  const text = pem.toString('latin1');
  let n = 0;
  beginLine.lastIndex = 0;
  for (let m = beginLine.exec(text); m !== null; m = beginLine.exec(text)) {
    const label = m[1] ?? '';
    if (!label.endsWith('CERTIFICATE')) continue;
    n++;
    const endLine = `-----END ${label}-----`;
    const end = text.indexOf(endLine, m.index);
    const nextBegin = text.indexOf('-----BEGIN ', m.index + m[0].length);
    const where = `certificate ${n} (at byte ${m.index})`;
    if (end === -1 || (nextBegin !== -1 && nextBegin < end)) {
      throw new HypError('HYP_E_TLS_FILE', { file, key, detail: `${where} has no END line (truncated?)` });
    }
    try {
      new X509Certificate(text.slice(m.index, end + endLine.length));
    } catch (err) {
      throw new HypError(
        'HYP_E_TLS_FILE',
        { file, key, detail: `${where} does not parse (${errorMessage(err)})` },
        { cause: err },
      );
    }
    beginLine.lastIndex = end + endLine.length;
  }
}

/** Key types a TLS 1.3 or ECDHE (RSA / ECDSA) TLS 1.2 handshake can sign with. */
const servableKeyTypes = new Set(['rsa', 'rsa-pss', 'ec', 'ed25519', 'ed448']);

/** PKCS#8 `ENCRYPTED PRIVATE KEY` or a traditional PEM with `Proc-Type: 4,ENCRYPTED`. */
const encryptedPem = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/;

function parseKey(pem: Buffer, file: string, key: string): KeyObject {
  if (encryptedPem.test(pem.toString('latin1'))) {
    throw new HypError('HYP_E_TLS_FILE', {
      file,
      key,
      detail:
        'the private key is passphrase-protected; hyp needs it unencrypted (openssl pkey -in it -out new.key)',
    });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new HypError(
      'HYP_E_TLS_FILE',
      { file, key, detail: `not an unencrypted PEM private key (${errorMessage(err)})` },
      { cause: err },
    );
  }
  const type = privateKey.asymmetricKeyType ?? 'unknown';
  if (!servableKeyTypes.has(type)) {
    throw new HypError('HYP_E_TLS_FILE', {
      file,
      key,
      detail: `a ${type.toUpperCase()} key cannot sign any TLS 1.3 or ECDHE TLS 1.2 handshake; use an RSA, ECDSA or Ed25519 key`,
    });
  }
  return privateKey;
}

/**
 * OpenSSL's own verdict, as a worker would meet it: it refuses material
 * that parses (an RSA key below its security level: "ee key too small"; a
 * CA signed with a digest it no longer trusts: "ca md too weak"). Node 26's
 * OpenSSL refuses RSA keys under 2048 bits that Node 20's accepts.
 */
function checkServable(
  m: { cert: Buffer; key: Buffer; ca: Buffer | undefined },
  tls: TlsConfig,
  at: string,
): void {
  try {
    createSecureContext({ cert: m.cert, key: m.key });
  } catch (err) {
    throw new HypError(
      'HYP_E_TLS_FILE',
      {
        file: tls.cert_file,
        key: `${at}.cert_file`,
        detail: `OpenSSL refuses to serve it (${errorMessage(err)})`,
      },
      { cause: err },
    );
  }
  if (!m.ca) return;
  try {
    createSecureContext({ ca: m.ca });
  } catch (err) {
    throw new HypError(
      'HYP_E_TLS_FILE',
      {
        file: tls.ca_file,
        key: `${at}.ca_file`,
        detail: `OpenSSL refuses the CA bundle (${errorMessage(err)})`,
      },
      { cause: err },
    );
  }
}

/**
 * Read and cross-check the files of one TLS config; `at` is its key path
 * (`server.tls`). Throws HYP_E_TLS_FILE (missing, unreadable, unparsable;
 * names the file and its config key) or HYP_E_TLS_MISMATCH (names both
 * files and their config keys).
 */
export function readTlsMaterial(tls: TlsConfig, at: string): TlsMaterial {
  const cert = readPem(tls.cert_file, `${at}.cert_file`);
  const key = readPem(tls.key_file, `${at}.key_file`);
  const ca = tls.ca_file ? readPem(tls.ca_file, `${at}.ca_file`) : undefined;
  return checkTlsMaterial({ cert, key, ca }, tls, at);
}

/** The PEM bytes of one TLS config, as read from its files (what `readTlsMaterial` checks). */
export interface TlsFiles {
  cert: Uint8Array;
  key: Uint8Array;
  ca?: Uint8Array | undefined;
}

/**
 * `readTlsMaterial`'s checks on bytes already read (the last good pair the
 * supervisor hands a new worker, tls/fallback.ts). Errors name the config's
 * files, where the bytes came from.
 */
export function checkTlsMaterial(files: TlsFiles, tls: TlsConfig, at: string): TlsMaterial {
  const cert = Buffer.from(files.cert.buffer, files.cert.byteOffset, files.cert.byteLength);
  const key = Buffer.from(files.key.buffer, files.key.byteOffset, files.key.byteLength);
  const ca = files.ca && Buffer.from(files.ca.buffer, files.ca.byteOffset, files.ca.byteLength);
  const leaf = parseCertificate(cert, tls.cert_file, `${at}.cert_file`);
  const privateKey = parseKey(key, tls.key_file, `${at}.key_file`);
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new HypError('HYP_E_TLS_MISMATCH', {
      key_file: tls.key_file,
      cert_file: tls.cert_file,
      key: `${at}.key_file`,
      cert_key: `${at}.cert_file`,
    });
  }
  checkCertificateBlocks(cert, tls.cert_file, `${at}.cert_file`);
  if (ca) {
    parseCertificate(ca, tls.ca_file, `${at}.ca_file`);
    checkCertificateBlocks(ca, tls.ca_file, `${at}.ca_file`);
  }
  if (tls.client_auth !== 'none' && !ca) {
    throw new HypError('HYP_E_TLS_FILE', {
      file: '(empty)',
      key: `${at}.ca_file`,
      detail: `required when ${at}.client_auth is ${tls.client_auth}`,
    });
  }
  checkServable({ cert, key, ca }, tls, at);
  return { cert, key, ca, leaf };
}

/** Every TLS config that is enabled, with its key path. */
export function enabledTlsConfigs(config: Config): Array<{ at: string; tls: TlsConfig }> {
  const out: Array<{ at: string; tls: TlsConfig }> = [];
  if (config.server.tls.enabled) out.push({ at: 'server.tls', tls: config.server.tls });
  for (const [name, service] of Object.entries(config.tcp ?? {})) {
    if (service.tls?.enabled) out.push({ at: `tcp.${name}.tls`, tls: service.tls });
  }
  return out;
}

/** The supervisor's start-up check: throws the first unusable file as a HypError (exit 2). */
export function checkTlsFiles(config: Config): void {
  for (const { at, tls } of enabledTlsConfigs(config)) readTlsMaterial(tls, at);
}

/**
 * Now, in milliseconds, on the host's monotonic clock (`process.hrtime`:
 * CLOCK_MONOTONIC on Linux), which every process of the host shares and no
 * one sets: when a pair of TLS files was read. It orders the reads of
 * different workers (and the supervisor's own) without trusting the files'
 * times or the wall clock (docs/tls.md, "which pair is the last good one").
 */
export function tlsReadClock(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** A last good pair, and when it was read (`tlsReadClock`). */
interface HeldTls {
  files: TlsFiles;
  readAt: number;
}

/** What `LastGoodTls.reloaded` did with a report. */
export type TlsReloadOutcome =
  | { leaf: TlsMaterial['leaf']; from: 'report' | 'disk' }
  | { error: unknown; from: 'report' | 'disk' }
  /** The report's files were read before those of the pair held (`behindMs` earlier): ignored. */
  | { older: { behindMs: number }; from: 'report' };

/**
 * The files of each TLS listener as they last passed the checks above.
 * The supervisor refreshes them whenever it starts a worker and whenever a
 * worker reports a reload, and hands them to each new worker: a worker
 * that starts while the files on disk are broken (a restart after a crash,
 * a roll, in the middle of a bad rotation) serves the last good pair, as
 * the running workers still do, instead of failing to start
 * (tls/fallback.ts).
 *
 * Each pair is held with the time it was read (`tlsReadClock`): reports
 * from different workers arrive in any order, and a pair read before the
 * one held is older content of the same files, not a newer rotation.
 */
export class LastGoodTls {
  private readonly good = new Map<string, HeldTls>();
  /** The config of the last full refresh, and when: the workers of one roll start together, the files are read once. */
  private last: { config: Config; at: number } | undefined;

  /**
   * Read the files of every TLS listener of `config` and keep those that
   * pass. Returns what a new worker gets; a listener whose files fail keeps
   * its previous entry.
   */
  refresh(config: Config): Record<string, TlsFiles> {
    const now = Date.now();
    if (this.last?.config === config && now - this.last.at < 1000) return this.handout();
    this.last = { config, at: now };
    for (const { at, tls } of enabledTlsConfigs(config)) {
      try {
        const readAt = tlsReadClock();
        const m = readTlsMaterial(tls, at);
        this.good.set(at, { files: { cert: m.cert, key: m.key, ca: m.ca }, readAt });
      } catch {
        // broken on disk: the workers report it (HYP_E_TLS_RELOAD, HYP_E_TLS_FALLBACK); keep the last good
      }
    }
    return this.handout();
  }

  private handout(): Record<string, TlsFiles> {
    const out: Record<string, TlsFiles> = {};
    for (const [at, held] of this.good) out[at] = held.files;
    return out;
  }

  /**
   * A worker reloaded the files of `at`: take the pair it installed as the
   * new last good one. `report` holds the bytes it read (its `tls-reloaded`
   * message's `files`), when it read them (`readAt`, `tlsReadClock`) and
   * the config it runs: those are checked as the files would be and kept,
   * so files broken again a moment after the rotation cannot leave the
   * supervisor on the pair before it. A report read before the pair held
   * is ignored (`older`): another worker, or the supervisor, has read the
   * files since, so they held something newer. A worker without bytes (an
   * older version, during a roll) or whose listener names other files than
   * `config` (a SIGHUP changed them) gets the files read from disk instead,
   * now; bytes without `readAt` (the version before) are taken as read on
   * arrival. Returns the certificate now held for `at` (for the log line),
   * or why the report or the files were refused, in which case the
   * previous pair is kept.
   */
  reloaded(
    config: Config,
    at: string,
    report?: { files: unknown; config: Config; worker: number; readAt?: unknown },
  ): TlsReloadOutcome {
    const tls = enabledTlsConfigs(config).find((l) => l.at === at)?.tls;
    if (tls === undefined) return { error: new Error(`no TLS listener ${at}`), from: 'disk' };
    const theirs = report && enabledTlsConfigs(report.config).find((l) => l.at === at)?.tls;
    const from =
      report?.files !== undefined && theirs !== undefined && sameFiles(tls, theirs) ? 'report' : 'disk';
    try {
      let readAt = tlsReadClock();
      if (from === 'report' && report?.readAt !== undefined) {
        readAt = reportedReadAt(report);
        const held = this.good.get(at);
        // Equal or later wins: an operator rolling back to an older pair is a later read too.
        if (held !== undefined && readAt < held.readAt)
          return { older: { behindMs: held.readAt - readAt }, from };
      }
      const m =
        from === 'report' ? checkTlsMaterial(reportedFiles(report, tls), tls, at) : readTlsMaterial(tls, at);
      this.good.set(at, { files: { cert: m.cert, key: m.key, ca: m.ca }, readAt });
      return { leaf: m.leaf, from };
    } catch (error) {
      return { error, from };
    }
  }
}

/** A report's `readAt`: a time on `tlsReadClock`, a finite number. Throws HYP_E_IPC_MESSAGE. */
function reportedReadAt(report: { readAt?: unknown; worker: number }): number {
  const value = report.readAt;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new HypError('HYP_E_IPC_MESSAGE', {
      worker: report.worker,
      what: `tls-reloaded readAt is not a time in milliseconds (${typeof value === 'number' ? value : typeof value})`,
    });
  return value;
}

function sameFiles(a: TlsConfig, b: TlsConfig): boolean {
  return a.cert_file === b.cert_file && a.key_file === b.key_file && a.ca_file === b.ca_file;
}

/**
 * The `files` of a worker's `tls-reloaded` report, checked for shape before
 * `checkTlsMaterial` parses them: anything in a worker can write to its IPC
 * channel. Throws HYP_E_IPC_MESSAGE naming the field.
 */
function reportedFiles(report: { files: unknown; worker: number } | undefined, tls: TlsConfig): TlsFiles {
  const value = report?.files;
  const refuse = (what: string) => new HypError('HYP_E_IPC_MESSAGE', { worker: report?.worker ?? '?', what });
  if (typeof value !== 'object' || value === null) throw refuse('tls-reloaded files is not an object');
  const { cert, key, ca } = value as Record<string, unknown>;
  for (const [name, bytes] of [
    ['cert', cert],
    ['key', key],
    ['ca', ca],
  ] as const) {
    if (bytes === undefined && name === 'ca') continue;
    if (!(bytes instanceof Uint8Array)) throw refuse(`tls-reloaded files.${name} is not bytes`);
    if (bytes.byteLength > maxPemBytes)
      throw refuse(
        `tls-reloaded files.${name} has ${bytes.byteLength} bytes, more than any PEM bundle (limit ${maxPemBytes})`,
      );
  }
  // The CA goes with the config: a report without one for a listener that names a ca_file (or the reverse) is not its pair.
  if ((ca !== undefined) !== (tls.ca_file !== ''))
    throw refuse(
      `tls-reloaded files.ca is ${ca === undefined ? 'missing' : 'present'}, the config's ca_file is ${tls.ca_file === '' ? 'not set' : 'set'}`,
    );
  return {
    cert: cert as Uint8Array,
    key: key as Uint8Array,
    ...(ca === undefined ? {} : { ca: ca as Uint8Array }),
  };
}
