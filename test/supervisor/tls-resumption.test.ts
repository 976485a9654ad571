/**
 * TLS resumption across workers of a real supervisor: with the supervisor's
 * shared ticket keys, sequential connections resume whichever worker
 * accepts; with per-worker keys (`server.tls.share_ticket_keys=false`,
 * which exists only for this proof) a connection resumes exactly when it
 * lands on the worker that issued its ticket — about half the time with 2.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { fixtureApp, type Running, startSupervisor } from '../helpers/supervisor.js';
import { tlsVisit } from '../helpers/tls-visit.js';

let pki: TestPki;
let sup: Running | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

interface Visit {
  reused: boolean;
  pid: number;
  session: Buffer | undefined;
}

async function visit(port: number, session: Buffer | undefined): Promise<Visit> {
  const { reused, session: next, body } = await tlsVisit(port, pki.read(pki.caCert), session, '/api/worker');
  return { reused, pid: Number(/"pid":(\d+)/.exec(body)?.[1] ?? 0), session: next };
}

async function sequential(port: number, n: number): Promise<Visit[]> {
  const visits: Visit[] = [];
  let session: Buffer | undefined = (await visit(port, undefined)).session;
  for (let i = 0; i < n; i++) {
    const v = await visit(port, session);
    visits.push(v);
    session = v.session ?? session;
  }
  return visits;
}

const tlsSets = () => [
  'server.tls.enabled=true',
  `server.tls.cert_file=${pki.serverCert}`,
  `server.tls.key_file=${pki.serverKey}`,
];

describe('TLS resumption with 2 workers', () => {
  it('shared ticket keys: at least 38 of 40 sequential connections resume, whichever worker accepts', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2, sets: tlsSets() });
    const visits = await sequential(sup.httpPort, 40);
    const resumed = visits.filter((v) => v.reused).length;
    const pids = new Set(visits.map((v) => v.pid));
    const crossWorker = visits.filter((v, i) => i > 0 && v.pid !== visits[i - 1]!.pid);
    console.log(
      `shared keys: ${resumed}/40 resumed; workers hit: ${pids.size}; worker switches: ${crossWorker.length}`,
    );
    expect(pids.size).toBe(2);
    expect(resumed).toBeGreaterThanOrEqual(38);
    // resumption holds on the connections that switched worker as well
    expect(crossWorker.filter((v) => v.reused).length).toBeGreaterThanOrEqual(crossWorker.length - 2);
  });

  it('per-worker keys (the proof): a connection resumes only on the worker that issued its ticket — about half', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 2,
      sets: [...tlsSets(), 'server.tls.share_ticket_keys=false'],
    });
    const visits = await sequential(sup.httpPort, 40);
    const resumed = visits.filter((v) => v.reused).length;
    const sameWorker = visits.filter((v, i) => i > 0 && v.pid === visits[i - 1]!.pid).length;
    const switches = visits.length - 1 - sameWorker;
    console.log(`per-worker keys: ${resumed}/40 resumed; worker switches: ${switches}`);
    expect(new Set(visits.map((v) => v.pid)).size).toBe(2);
    expect(switches).toBeGreaterThanOrEqual(5);
    // Resumed exactly when it stayed on the worker that sealed its ticket.
    for (let i = 1; i < visits.length; i++) {
      expect(visits[i]!.reused).toBe(visits[i]!.pid === visits[i - 1]!.pid);
    }
    expect(resumed).toBeLessThan(38);
  });
});
