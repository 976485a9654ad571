/**
 * Certificate and key checks, run by the supervisor before any worker starts
 * (bad files stop `hyp run` with exit 2, naming the file) and by workers when
 * a watched file changes (a bad replacement is refused, the old one stays).
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
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

function readPem(file: string, key: string): Buffer {
  if (!file)
    throw new HypError('HYP_E_TLS_FILE', { file: '(empty)', key, detail: 'required when TLS is enabled' });
  try {
    return readFileSync(file);
  } catch (err) {
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

function parseKey(pem: Buffer, file: string, key: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new HypError(
      'HYP_E_TLS_FILE',
      { file, key, detail: `not an unencrypted PEM private key (${errorMessage(err)})` },
      { cause: err },
    );
  }
}

/**
 * Read and cross-check the files of one TLS config; `at` is its key path
 * (`server.tls`). Throws HYP_E_TLS_FILE (missing, unreadable, unparsable;
 * names the file and its config key) or HYP_E_TLS_MISMATCH.
 */
export function readTlsMaterial(tls: TlsConfig, at: string): TlsMaterial {
  const cert = readPem(tls.cert_file, `${at}.cert_file`);
  const key = readPem(tls.key_file, `${at}.key_file`);
  const ca = tls.ca_file ? readPem(tls.ca_file, `${at}.ca_file`) : undefined;
  const leaf = parseCertificate(cert, tls.cert_file, `${at}.cert_file`);
  const privateKey = parseKey(key, tls.key_file, `${at}.key_file`);
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new HypError('HYP_E_TLS_MISMATCH', { key_file: tls.key_file, cert_file: tls.cert_file });
  }
  if (ca) parseCertificate(ca, tls.ca_file, `${at}.ca_file`);
  if (tls.client_auth !== 'none' && !ca) {
    throw new HypError('HYP_E_TLS_FILE', {
      file: '(empty)',
      key: `${at}.ca_file`,
      detail: `required when ${at}.client_auth is ${tls.client_auth}`,
    });
  }
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
