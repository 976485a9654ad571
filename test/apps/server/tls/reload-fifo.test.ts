/**
 * A named pipe put in place of a watched certificate (a rotation script
 * that writes through `mkfifo`, a mistake) is refused by the reload without
 * being opened, as `hyp run` refuses one at start
 * (tlscheck-openssl-refusals.test.ts). Opening a FIFO to read blocks until a
 * writer comes, and the reload runs on the worker's event loop: before, the
 * reload's first read of the files (the state it compares with the last
 * refused one) opened it, and the worker stopped serving anything until a
 * writer came.
 *
 * Whether anyone blocked on the pipe is seen by a helper process that opens
 * it to write without blocking (O_NONBLOCK: ENXIO while no reader waits); it
 * releases a blocked reader with an empty write and says so in a marker file.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { type Served, serve } from '../http/harness.js';
import { copyServerPair, makePki, reloadFailures, servedCn, type TestPki } from './certs.js';

let pki: TestPki;
let served: Served | undefined;
let helper: ChildProcess | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  if (helper?.exitCode === null) helper.kill();
  helper = undefined;
  await served?.close();
  served = undefined;
});

/** For 20 s: whenever a reader waits on `fifo`, release it (end of file) and note it in `marker`. */
const releaser = `
const fs = require('node:fs');
const [fifo, marker] = process.argv.slice(1);
const end = Date.now() + 20000;
const tick = () => {
  try {
    const fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    fs.appendFileSync(marker, 'a reader was blocked\\n');
    fs.closeSync(fd);
  } catch {}
  if (Date.now() < end) setTimeout(tick, 50);
};
tick();
`;

describe('a named pipe in place of the certificate', () => {
  it('is refused by the reload (HYP_E_TLS_RELOAD, counted) without being opened; the old pair keeps serving', async () => {
    const { dir, cert, key } = copyServerPair(pki);
    served = await serve([
      'server.tls.enabled=true',
      `server.tls.cert_file=${cert}`,
      `server.tls.key_file=${key}`,
    ]);
    expect(await servedCn(pki, served.port)).toBe('hyp server one');

    const fifo = join(dir, 'new.crt');
    const marker = join(dir, 'blocked');
    execFileSync('mkfifo', [fifo]);
    renameSync(fifo, cert);
    helper = spawn(process.execPath, ['-e', releaser, cert, marker], { stdio: 'ignore' });

    const logs = served.logs;
    const refused = await until(
      () => logs.find((l) => l.code === 'HYP_E_TLS_RELOAD'),
      'the pipe refused',
      15_000,
    );
    expect(refused.msg).toContain(cert);
    expect(refused.msg).toContain('not a regular file');
    expect(await reloadFailures(served.registry)).toBe(1);
    expect(await servedCn(pki, served.port)).toBe('hyp server one');
    // Nobody ever waited on the pipe.
    expect(existsSync(marker)).toBe(false);
  });
});
