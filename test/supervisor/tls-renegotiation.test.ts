/**
 * docs/tls.md: "TLS 1.2 renegotiation is disabled." A client that asks to
 * renegotiate a live TLS 1.2 connection, on the HTTP listener and on a TCP
 * service with TLS, gets no new handshake: the server answers with the
 * no_renegotiation alert, the connection ends, and the worker that refused
 * stays up and keeps serving new connections. Real peers: node:tls
 * (`socket.renegotiate()`) and `openssl s_client -tls1_2` (`R`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { demoApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';
import { tlsVisit } from '../helpers/tls-visit.js';

let pki: TestPki;
let sup: Running;
let echoPort: number;
let workerPid: number;
beforeAll(async () => {
  pki = makePki();
  sup = await startSupervisor({
    app: demoApp,
    workers: 1,
    sets: [
      ...pki.tlsSets(),
      // long enough that only the fix, not Node's headers timeout, can free a dead connection (below)
      'server.limits.headers_timeout=120s',
      'tcp.echo.addr=127.0.0.1:0',
      'tcp.echo.tls.enabled=true',
      `tcp.echo.tls.cert_file=${pki.serverCert}`,
      `tcp.echo.tls.key_file=${pki.serverKey}`,
    ],
  });
  const echo = await sup.waitLog(
    (l) => l.msg === 'holding listener' && l.listener === 'echo',
    'echo listener',
  );
  echoPort = Number(echo.port);
  workerPid = (await sup.status()).workers[0]!.pid;
});
afterAll(async () => {
  await sup?.stop();
});

interface Renegotiation {
  /** What the client saw on its live connection before asking (the proof it was served). */
  before: string;
  /** renegotiate()'s callback reported a completed new handshake. */
  renegotiated: boolean;
  /** The error the client's socket or the callback got. */
  error: (Error & { code?: string }) | undefined;
  /** The connection ended. */
  closed: boolean;
}

/**
 * Open a TLS 1.2 connection to `port`, send `hello` and wait for `expect`
 * in the answer, then ask for a renegotiation and send `hello` again (Node
 * sends the new ClientHello as the connection next writes). Settles when the
 * callback reports, or the connection ends; gives up after 15 s (`closed`
 * false).
 */
function renegotiate(port: number, hello: string, expect: string): Promise<Renegotiation> {
  return new Promise((resolve) => {
    const out: Renegotiation = { before: '', renegotiated: false, error: undefined, closed: false };
    let asked = false;
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port,
      ca: pki.read(pki.caCert),
      maxVersion: 'TLSv1.2',
    });
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, 15_000);
    socket.setEncoding('utf8');
    socket.on('secureConnect', () => socket.write(hello));
    socket.on('data', (d: string) => {
      if (asked) return;
      out.before += d;
      if (!out.before.includes(expect)) return;
      asked = true;
      const started = socket.renegotiate({ ca: pki.read(pki.caCert) }, (err) => {
        if (err) out.error ??= err;
        else out.renegotiated = true;
        // A completed renegotiation keeps the connection: nothing more to wait for.
        if (!err) done();
      });
      if (!started) {
        out.error = new Error('renegotiate() refused to start on the client');
        done();
        return;
      }
      socket.write(hello);
    });
    socket.on('error', (err) => {
      out.error ??= err;
    });
    socket.on('close', () => {
      out.closed = true;
      done();
    });
  });
}

/** The worker that refused is the same process, still ready, and serves a new connection. */
async function stillServing(check: () => Promise<void>): Promise<void> {
  const s = await sup.status();
  expect(s.workers.map((w) => [w.pid, w.state])).toEqual([[workerPid, 'ready']]);
  expect(sup.logs.filter((l) => l.msg === 'worker exited')).toEqual([]);
  expect(sup.logs.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
  await check();
}

const httpOk = async () => {
  const visit = await tlsVisit(sup.httpPort, pki.read(pki.caCert), undefined, '/api/ping');
  expect(visit.body).toMatch(/^HTTP\/1\.1 200 /);
  expect(visit.body.endsWith('pong')).toBe(true);
};

const echoOk = () =>
  new Promise<void>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: echoPort, ca: pki.read(pki.caCert) }, () =>
      socket.write('still here'),
    );
    socket.setEncoding('utf8');
    let got = '';
    socket.on('data', (d: string) => {
      got += d;
      if (got === 'still here') {
        socket.destroy();
        resolve();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`echo closed after ${JSON.stringify(got)}`)));
  });

/** Expect the client's attempt refused by the server's no_renegotiation alert, the connection gone. */
function expectRefused(r: Renegotiation): void {
  expect(r.renegotiated).toBe(false);
  expect(r.closed).toBe(true);
  expect(r.error?.code).toBe('EPROTO');
  expect(r.error?.message).toMatch(/no renegotiation/);
}

describe('TLS 1.2 renegotiation is refused', () => {
  it('HTTP listener, node:tls renegotiate() on a served keep-alive connection: no new handshake, the connection ends; the worker stays up and serves', async () => {
    const r = await renegotiate(sup.httpPort, 'GET /api/ping HTTP/1.1\r\nhost: x\r\n\r\n', 'pong');
    expect(r.before).toMatch(/^HTTP\/1\.1 200 /);
    expectRefused(r);
    await stillServing(httpOk);
  });

  it('HTTP listener, openssl s_client -tls1_2 then R: "no renegotiation", s_client exits; the worker stays up and serves', async () => {
    const client: ChildProcess = spawn(
      'openssl',
      ['s_client', '-tls1_2', '-connect', `127.0.0.1:${sup.httpPort}`, '-CAfile', pki.caCert],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    client.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    client.stderr!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    const exited = new Promise<number | null>((res) => client.once('exit', (code) => res(code)));
    try {
      // The session summary ends with the verify result, once the handshake is done.
      await until(() => /Verify return code: 0 \(ok\)/.test(out) || undefined, 's_client handshake', 15_000);
      expect(out).toMatch(/Protocol\s*: TLSv1\.2/);
      await until(
        async () => ((await sup.status()).workers[0]?.connections === 1 ? true : undefined),
        "the worker counting s_client's connection",
        10_000,
      );
      client.stdin!.write('R\n');
      // stdin stays open: s_client ends only because the server ended the connection.
      const code = await Promise.race([
        exited,
        new Promise<'running'>((res) => setTimeout(() => res('running'), 15_000)),
      ]);
      expect(code).not.toBe('running');
      expect(out).toContain('RENEGOTIATING');
      expect(out).toMatch(/no renegotiation/);
    } finally {
      if (client.exitCode === null && client.signalCode === null) client.kill('SIGKILL');
      await exited;
    }
    // s_client answers the refusal with a fatal alert, a TLS error Node hands the HTTP server as a
    // client error: the worker lets go of the dead connection (a 400 written to it never finished,
    // and the socket stayed counted until the headers timeout, holding a drain up to drain.timeout)
    await until(
      async () => ((await sup.status()).workers[0]?.connections === 0 ? true : undefined),
      'the worker drops the connection s_client left',
      10_000,
    );
    await stillServing(httpOk);
  });

  it('TCP service with TLS (tcp.echo.tls), node:tls renegotiate() after an echo: no new handshake, the connection ends; the worker stays up and echoes', async () => {
    const r = await renegotiate(echoPort, 'ping', 'ping');
    expect(r.before).toBe('ping');
    expectRefused(r);
    await stillServing(echoOk);
  });
});
