/**
 * A reload that finds the watched files as they are served does no work.
 * In a directory where another file changes every 50 ms (a log, a status
 * file), the watch's debounce ends at its 2 s cap, again and again, and the
 * manager re-reads the files each time. Before, each of those reloads also
 * re-parsed and re-checked the pair (X.509, key, two OpenSSL contexts:
 * about 2.3 ms of CPU on Node 20 with an EC pair, more with RSA or a large
 * CA bundle) only to find it unchanged. Now the bytes just read are compared
 * with the bytes served first. A real rotation is still picked up, also
 * one written in place that keeps the size and the mtime (`cp -p` of a file
 * the same size).
 *
 * The checks in supervisor/tlscheck.ts are counted through a wrapper
 * (vi.mock); the files, the watch, the TLS server and its clients are real.
 */
import { readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server as TlsServer } from 'node:tls';
import { Registry } from 'prom-client';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { setTlsFallback } from '../../../../apps/server/tls/fallback.js';
import { TlsManager } from '../../../../apps/server/tls/manager.js';
import { until } from '../../../helpers/supervisor.js';
import { configWith, memoryLog } from '../http/harness.js';
import { copyServerPair, makePki, reloadFailures, servedCn, type TestPki } from './certs.js';

const checks = vi.hoisted(() => ({ count: 0 }));
vi.mock('../../../../supervisor/tlscheck.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../../supervisor/tlscheck.js')>();
  return {
    ...real,
    readTlsMaterial: (...args: Parameters<typeof real.readTlsMaterial>) => {
      checks.count++;
      return real.readTlsMaterial(...args);
    },
    checkTlsMaterial: (...args: Parameters<typeof real.checkTlsMaterial>) => {
      checks.count++;
      return real.checkTlsMaterial(...args);
    },
  };
});

let pki: TestPki;
let manager: TlsManager | undefined;
let server: TlsServer | undefined;
let noise: NodeJS.Timeout | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  clearInterval(noise);
  manager?.close();
  manager = undefined;
  setTlsFallback(undefined);
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

/** A TLS server on loopback whose certificate `TlsManager` keeps current, as the HTTP listener's. */
async function listen(cert: string, key: string) {
  const config = configWith([
    'server.tls.enabled=true',
    `server.tls.cert_file=${cert}`,
    `server.tls.key_file=${key}`,
  ]).server.tls;
  const { log, logs } = memoryLog();
  const registry = new Registry();
  const reloaded: string[] = [];
  setTlsFallback(undefined, (at) => reloaded.push(at));
  manager = new TlsManager({
    config,
    at: 'server.tls',
    alpn: ['http/1.1'],
    handshakeTimeoutMs: 10_000,
    registry,
    log,
  });
  const m = manager;
  let reloads = 0;
  const reload = m.reload.bind(m);
  m.reload = () => {
    reloads++;
    return reload();
  };
  server = createServer(m.serverOptions(), (s) => s.end());
  m.attach(server);
  const s = server;
  const port = await new Promise<number>((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)),
  );
  return { port, logs, registry, reloaded, reloads: () => reloads };
}

/** `content` padded with newlines (after its last PEM block, which parsers ignore) to `size` bytes. */
function padded(content: Buffer, size: number): Buffer {
  return Buffer.concat([content, Buffer.alloc(Math.max(0, size - content.length), '\n')]);
}

describe('a reload that finds the files unchanged', () => {
  it('in a busy directory: no re-parse, no new context, no reload log or report; a rotation that keeps size and mtime is still served', async () => {
    const { dir, cert, key } = copyServerPair(pki);
    // Both pairs padded to one size per file, so that the rotation below keeps every size.
    const certs = [pki.read(pki.serverCert), pki.read(pki.server2Cert)];
    const keys = [pki.read(pki.serverKey), pki.read(pki.server2Key)];
    const certSize = Math.max(...certs.map((b) => b.length)) + 8;
    const keySize = Math.max(...keys.map((b) => b.length)) + 8;
    writeFileSync(cert, padded(certs[0]!, certSize));
    writeFileSync(key, padded(keys[0]!, keySize));
    // Whole seconds, so that setting them again below gives the very same mtime.
    const mtime = Math.floor(Date.now() / 1000) - 3600;
    utimesSync(cert, mtime, mtime);
    utimesSync(key, mtime, mtime);

    const served = await listen(cert, key);
    expect(await servedCn(pki, served.port)).toBe('hyp server one');
    const setContext = vi.spyOn(server!, 'setSecureContext');
    const checksAtStart = checks.count;

    let n = 0;
    noise = setInterval(() => writeFileSync(join(dir, 'app.log'), `line ${n++}\n`, { flag: 'a' }), 50);
    // Two reloads at the debounce's cap while the directory never goes quiet.
    await until(() => served.reloads() >= 2 || undefined, 'two reloads in the busy directory', 15_000);
    expect(checks.count).toBe(checksAtStart);
    expect(setContext).not.toHaveBeenCalled();
    expect(served.logs.filter((l) => l.msg === 'TLS certificate reloaded')).toEqual([]);
    expect(served.reloaded).toEqual([]);
    expect(await reloadFailures(served.registry)).toBe(0);
    expect(await servedCn(pki, served.port)).toBe('hyp server one');

    // A rotation in place (same inodes) that keeps each file's size and mtime, as `cp -p` would.
    const before = [statSync(cert), statSync(key)];
    writeFileSync(key, padded(keys[1]!, keySize));
    writeFileSync(cert, padded(certs[1]!, certSize));
    utimesSync(key, mtime, mtime);
    utimesSync(cert, mtime, mtime);
    expect([statSync(cert).size, statSync(key).size]).toEqual([before[0]!.size, before[1]!.size]);
    expect([statSync(cert).mtimeMs, statSync(key).mtimeMs]).toEqual([before[0]!.mtimeMs, before[1]!.mtimeMs]);
    expect(readFileSync(cert).equals(padded(certs[0]!, certSize))).toBe(false);

    await until(
      async () => (await servedCn(pki, served.port)) === 'hyp server two' || undefined,
      'the rotated pair served',
      15_000,
    );
    expect(setContext).toHaveBeenCalledTimes(1);
    expect(served.logs.filter((l) => l.msg === 'TLS certificate reloaded')).toHaveLength(1);
    expect(served.reloaded).toEqual(['server.tls']);

    // And again unchanged: the next reloads of the busy directory do nothing.
    const checksAfterRotation = checks.count;
    const reloadsAfterRotation = served.reloads();
    await until(
      () => served.reloads() >= reloadsAfterRotation + 2 || undefined,
      'two more reloads in the busy directory',
      15_000,
    );
    expect(checks.count).toBe(checksAfterRotation);
    expect(setContext).toHaveBeenCalledTimes(1);
    expect(served.reloaded).toEqual(['server.tls']);
    expect(await reloadFailures(served.registry)).toBe(0);
  });

  it('unchanged files after a refused replacement was fixed back: nothing to install, nothing refused', async () => {
    const { cert, key } = copyServerPair(pki);
    const served = await listen(cert, key);
    const original = readFileSync(cert);
    writeFileSync(cert, 'not a certificate\n');
    await until(
      async () => ((await reloadFailures(served.registry)) === 1 ? true : undefined),
      'the refusal',
    );
    const setContext = vi.spyOn(server!, 'setSecureContext');
    writeFileSync(cert, original);
    const reloads = served.reloads();
    await until(() => served.reloads() > reloads || undefined, 'the reload of the restored file', 15_000);
    // The served pair is the one on disk again: no new context, not reported as a reload.
    expect(setContext).not.toHaveBeenCalled();
    expect(served.reloaded).toEqual([]);
    expect(await servedCn(pki, served.port)).toBe('hyp server one');
    // A later bad write is refused again (the refused state was cleared).
    writeFileSync(cert, 'not a certificate\n');
    await until(
      async () => ((await reloadFailures(served.registry)) === 2 ? true : undefined),
      'refused again',
    );
  });
});
