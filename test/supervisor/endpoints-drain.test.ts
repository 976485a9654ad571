/**
 * The pod drain waits for the pod to leave its Service's EndpointSlices
 * (drain.endpoints.service), with drain.delay as the upper bound. The real
 * supervisor talks to a local HTTPS stub of the Kubernetes API through a
 * kubeconfig file; every assertion is on order and on what the supervisor
 * itself reports (its log, /metrics), never on elapsed time.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type LogLine, type Running, startSupervisor, until } from '../helpers/supervisor.js';
import { type ApiStub, startApiStub } from './endpoints-stub.js';

let sup: Running | undefined;
let stub: ApiStub | undefined;
afterEach(async () => {
  await sup?.stop();
  await stub?.close();
  sup = undefined;
  stub = undefined;
});

const pod = 'web-7d9c5b6f4-abcde';
const other = 'web-7d9c5b6f4-fghij';

function start(api: ApiStub, delay: string, extra: string[] = []): Promise<Running> {
  return startSupervisor({
    app: fixtureApp('basic'),
    workers: 1,
    sets: [`drain.delay=${delay}`, 'drain.endpoints.service=web', 'drain.endpoints.settle=500ms', ...extra],
    env: { KUBECONFIG: api.kubeconfig, POD_NAME: pod, POD_NAMESPACE: 'web' },
  });
}

/** Until the supervisor has a watch open on the stub. */
function watching(what: string): Promise<true> {
  return until(() => (stub!.watches > 0 ? true : undefined), what);
}

/** A request that keeps a worker busy through the workers phase, so /metrics can still be read then. */
function slowRequest(s: Running, ms: number): Promise<number> {
  return fetch(`http://127.0.0.1:${s.httpPort}/api/slow?ms=${ms}`).then(async (r) => {
    await r.text();
    return r.status;
  });
}

async function metric(s: Running, name: string): Promise<number | undefined> {
  const text = await (await s.admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{service="web"} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

const indexOf = (logs: LogLine[], pred: (l: LogLine) => boolean) => logs.findIndex(pred);
const drainStarted = (l: LogLine) => l.msg === 'pod drain: not ready; serving through the delay';
const drained = (l: LogLine) => l.msg === 'pod drained; exiting';
const podLeft = (l: LogLine) =>
  typeof l.msg === 'string' && l.msg.includes(`pod ${pod} left the endpoints of service web`);
const workersPhase = (l: LogLine) =>
  typeof l.msg === 'string' && l.msg.startsWith('pod drain: draining workers');

describe('pod drain with drain.endpoints.service', () => {
  it('ends the serving phase once the pod is not ready in the EndpointSlices, long before a 60 s drain.delay', async () => {
    stub = await startApiStub([
      { pod, ready: true },
      { pod: other, ready: true },
    ]);
    sup = await start(stub, '60s');
    await watching('the supervisor watching the EndpointSlices');
    const list = stub.requests.find((r) => !r.watch);
    expect(list).toMatchObject({
      path: '/apis/discovery.k8s.io/v1/namespaces/web/endpointslices',
      labelSelector: 'kubernetes.io/service-name=web',
      authorization: `Bearer ${stub.token}`,
    });
    expect(await metric(sup, 'hyp_supervisor_drain_endpoints_left_seconds')).toBeUndefined();
    // GET /drain shows what the watch sees
    const endpoints = async () =>
      ((await (await sup!.admin('/drain')).json()) as { endpoints: unknown }).endpoints;
    await until(
      async () => ((await endpoints()) as { state?: string } | null)?.state === 'listed' || undefined,
      'GET /drain: listed',
    );
    expect(await endpoints()).toEqual({
      service: 'web',
      namespace: 'web',
      pod,
      state: 'listed',
      left_at: null,
      cause: null,
    });

    sup.proc.kill('SIGTERM');
    await sup.waitLog(drainStarted, 'drain started');
    const busy = slowRequest(sup, 3000);
    await sup.waitFor((s) => s.workers.some((w) => w.inflight === 1), 'request in flight');
    // the endpoints controller marks the terminating pod not ready; the other pod stays
    stub.setEndpoints([
      { pod, ready: false },
      { pod: other, ready: true },
    ]);
    const left = await sup.waitLog(podLeft, 'pod left the endpoints');
    expect(left.after_ms).toBeLessThan(60_000);
    const seen = (await endpoints()) as { state: string; left_at: string };
    expect(seen.state).toBe('left');
    expect(Date.parse(seen.left_at)).toBeGreaterThan(0);
    await sup.waitLog(workersPhase, 'workers phase');
    const seconds = await metric(sup, 'hyp_supervisor_drain_endpoints_left_seconds');
    expect(seconds).toBeGreaterThanOrEqual(0);
    expect(seconds).toBeLessThan(60);
    expect(await busy).toBe(200);
    expect((await sup.exited).code).toBe(0);

    const logs = sup.logs;
    expect(indexOf(logs, drainStarted)).toBeLessThan(indexOf(logs, (l) => l === left));
    expect(indexOf(logs, (l) => l === left)).toBeLessThan(indexOf(logs, workersPhase));
    expect(indexOf(logs, workersPhase)).toBeLessThan(indexOf(logs, drained));
    expect(logs.filter((l) => typeof l.code === 'string' && l.code.startsWith('HYP_W_DRAIN'))).toEqual([]);
  });

  it('a pod that drops out of every slice has left as well', async () => {
    stub = await startApiStub([{ pod, ready: true }]);
    sup = await start(stub, '60s');
    await watching('the supervisor watching the EndpointSlices');
    sup.proc.kill('SIGTERM');
    await sup.waitLog(drainStarted, 'drain started');
    stub.setEndpoints([{ pod: other, ready: true }]);
    await sup.waitLog(podLeft, 'pod left the endpoints');
    expect((await sup.exited).code).toBe(0);
  });

  it('a pod still listed as ready when drain.delay is over: HYP_W_DRAIN_ENDPOINTS, counted, and the drain goes on', async () => {
    stub = await startApiStub([{ pod, ready: true }]);
    sup = await start(stub, '1s');
    await watching('the supervisor watching the EndpointSlices');
    const busy = slowRequest(sup, 3000);
    await sup.waitFor((s) => s.workers.some((w) => w.inflight === 1), 'request in flight');
    sup.proc.kill('SIGTERM');
    const warning = await sup.waitLog((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS', 'the warning');
    expect(warning.level).toBe('warn');
    expect(warning.msg).toContain(`pod ${pod} still in the endpoints of service web after drain.delay`);
    await sup.waitLog(workersPhase, 'workers phase');
    expect(await metric(sup, 'hyp_supervisor_drain_endpoints_still_listed_total')).toBe(1);
    expect(await busy).toBe(200);
    expect((await sup.exited).code).toBe(0);
    expect(sup.logs.filter((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS')).toHaveLength(1);
    expect(indexOf(sup.logs, (l) => l === warning)).toBeLessThan(indexOf(sup.logs, drained));
  });

  it('a pod never seen in the slices (a wrong service or pod name) has not left: the drain serves through drain.delay, with a warning', async () => {
    stub = await startApiStub([{ pod: other, ready: true }]);
    sup = await start(stub, '1s');
    await watching('the supervisor watching the EndpointSlices');
    sup.proc.kill('SIGTERM');
    const warning = await sup.waitLog((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE', 'the warning');
    expect(warning.msg).toContain(`pod ${pod} has not been in them since the watch began`);
    expect((await sup.exited).code).toBe(0);
    expect(sup.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('left the endpoints'))).toBe(
      false,
    );
  });

  it('the API refuses (403, RBAC missing): one warning naming RBAC, and the drain serves through drain.delay and completes', async () => {
    stub = await startApiStub([{ pod, ready: true }]);
    stub.refuseWith(403);
    sup = await start(stub, '1s');
    const warning = await sup.waitLog(
      (l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE',
      'the unavailable warning',
    );
    expect(warning.level).toBe('warn');
    expect(warning.msg).toMatch(/403/);
    expect(warning.msg).toMatch(/RBAC/);
    expect(warning.msg).toMatch(/endpointslices/);
    sup.proc.kill('SIGTERM');
    const fallback = await sup.waitLog(
      (l) => typeof l.msg === 'string' && l.msg.includes('the endpoints were not known'),
      'the fallback',
    );
    expect((await sup.exited).code).toBe(0);
    expect(sup.logs.filter((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE')).toHaveLength(1);
    expect(indexOf(sup.logs, (l) => l === fallback)).toBeLessThan(indexOf(sup.logs, drained));
  });

  it('RBAC granted after the 403: the watch is retried, recovers, and the drain ends when the pod leaves', async () => {
    stub = await startApiStub([{ pod, ready: true }]);
    stub.refuseWith(403);
    sup = await start(stub, '60s');
    await sup.waitLog((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE', 'the unavailable warning');
    stub.refuseWith(undefined);
    await sup.waitLog((l) => l.msg === 'EndpointSlices of the service readable again', 'the recovery');
    await watching('the supervisor watching the EndpointSlices');
    sup.proc.kill('SIGTERM');
    await sup.waitLog(drainStarted, 'drain started');
    stub.setEndpoints([{ pod, ready: false }]);
    await sup.waitLog(podLeft, 'pod left the endpoints');
    expect((await sup.exited).code).toBe(0);
    expect(sup.logs.filter((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE')).toHaveLength(1);
  });

  it('the API server fails for a while after the watch began: the state is unknown meanwhile, re-listed once it answers, and the drain ends when the pod leaves', async () => {
    stub = await startApiStub([{ pod, ready: true }]);
    sup = await start(stub, '60s');
    await watching('the supervisor watching the EndpointSlices');
    const listsBefore = stub.requests.filter((r) => !r.watch).length;
    stub.refuseWith(503);
    stub.dropWatches();
    const warning = await sup.waitLog((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE', 'the warning');
    expect(warning.msg).toContain('503');
    stub.refuseWith(undefined);
    await sup.waitLog((l) => l.msg === 'EndpointSlices of the service readable again', 'the recovery');
    expect(
      stub.requests.filter((r) => !r.watch && r.authorization === `Bearer ${stub!.token}`).length,
    ).toBeGreaterThan(listsBefore);
    await watching('the supervisor watching again');
    sup.proc.kill('SIGTERM');
    await sup.waitLog(drainStarted, 'drain started');
    stub.setEndpoints([{ pod, ready: false }]);
    await sup.waitLog(podLeft, 'pod left the endpoints');
    expect((await sup.exited).code).toBe(0);
  });

  it('the API server goes away after the watch began: one warning naming it, and the drain serves through drain.delay', async () => {
    stub = await startApiStub([{ pod, ready: true }]);
    sup = await start(stub, '1s');
    await watching('the supervisor watching the EndpointSlices');
    await stub.close();
    const warning = await sup.waitLog(
      (l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE',
      'the unavailable warning',
    );
    expect(warning.msg).toMatch(/unreachable/);
    sup.proc.kill('SIGTERM');
    await sup.waitLog(
      (l) => typeof l.msg === 'string' && l.msg.includes('the endpoints were not known'),
      'the fallback',
    );
    expect((await sup.exited).code).toBe(0);
    expect(sup.logs.filter((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS')).toEqual([]);
  });

  it('no API at all (no KUBECONFIG, not in a cluster, as in the e2e containers): one warning, the drain serves through drain.delay', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 1,
      sets: ['drain.delay=1s', 'drain.endpoints.service=web', 'drain.endpoints.namespace=web'],
      env: { KUBECONFIG: '', KUBERNETES_SERVICE_HOST: '', POD_NAME: pod },
    });
    const warning = await sup.waitLog(
      (l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE',
      'the unavailable warning',
    );
    expect(warning.msg).toMatch(/KUBERNETES_SERVICE_HOST/);
    sup.proc.kill('SIGTERM');
    expect((await sup.exited).code).toBe(0);
    expect(sup.logs.filter((l) => l.code === 'HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE')).toHaveLength(1);
  });

  it('a SIGHUP that changes drain.endpoints restarts the watch on the new settings', async () => {
    stub = await startApiStub([{ pod, ready: true }]);
    const dir = mkdtempSync(join(tmpdir(), 'hyp-endpoints-'));
    const file = join(dir, 'hyp.yaml');
    const config = (who: string) => `drain:\n  endpoints:\n    service: web\n    pod: ${who}\n`;
    writeFileSync(file, config(other));
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 1,
      sets: ['drain.delay=1s'],
      env: { KUBECONFIG: stub.kubeconfig, POD_NAMESPACE: 'web', HYP_CONFIG: file },
    });
    const view = async () =>
      ((await (await sup!.admin('/drain')).json()) as { endpoints: { pod: string; state: string } | null })
        .endpoints;
    // `other` is in no slice: never listed
    await until(async () => (await view())?.state === 'never-listed' || undefined, 'never-listed');
    expect((await view())?.pod).toBe(other);
    writeFileSync(file, config(pod));
    sup.proc.kill('SIGHUP');
    await until(async () => (await view())?.state === 'listed' || undefined, 'listed after the reload');
    expect((await view())?.pod).toBe(pod);
  });
});
