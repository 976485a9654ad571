/**
 * Rollout harness: hyp's zero-downtime promise measured on real parts.
 *
 *   npm run test:e2e                       (needs a Docker engine: test/e2e/docker-setup.sh)
 *   HYP_E2E_PROPAGATION_MS=5000 npm run test:e2e
 *
 * It builds the image from the repository's Dockerfile (bootstrapping the base
 * image offline when missing), renders the Helm chart and reads the Deployment
 * (image args, env, ports, readiness probe, preStop hook, grace period) and
 * the ConfigMap, runs the pods as containers published on 127.0.0.1 only, and
 * puts a real HAProxy in front as the Service; the pods share a Redis on a
 * user-defined Docker network (the hub's `websocket.bus.driver: redis`). Then,
 * under keep-alive HTTP load through HAProxy and WebSocket clients subscribed
 * to one channel with a publisher numbering its messages, it plays
 * `kubectl rollout restart` of 2 replicas (maxSurge 1, maxUnavailable 0) and an
 * in-container SIGUSR2 restart, and counts every failed request and every
 * lost, duplicated or reordered message. Control runs without the preStop hook
 * show the failures the harness can see.
 *
 * Env: HYP_E2E_PROPAGATION_MS (endpoint propagation delay, default 2000),
 * HYP_E2E_CONNECTIONS (default 32), HYP_E2E_WS_CLIENTS (default 20),
 * HYP_E2E_WS_RATE (publisher messages/s, default 100), HYP_E2E_IMAGE (skip the build, use this tag),
 * HYP_E2E_VARIANTS (comma list of: prestop, no-prestop, no-prestop-no-delay).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { durationMs } from '../../supervisor/config/units.js';
import { helmBinary, helmReleases, repoRoot, runHelm } from '../helm/helm.js';
import { docker, exitState, run } from './docker.js';
import { HaproxyService } from './haproxy.js';
import { Kubelet, type PodSpec, type Termination } from './kubelet.js';
import { HttpLoad, type LoadResult } from './load.js';
import { buildRedisImage, ClusterRedis } from './redis.js';
import { type WsClientResult, WsLoad, type WsLoadResult } from './ws-load.js';

const propagationMs = Number(process.env.HYP_E2E_PROPAGATION_MS ?? 2000);
const connections = Number(process.env.HYP_E2E_CONNECTIONS ?? 32);
const wsClients = Number(process.env.HYP_E2E_WS_CLIENTS ?? 20);
const wsRate = Number(process.env.HYP_E2E_WS_RATE ?? 100);
const replicas = 2;

interface Variant {
  readonly name: string;
  readonly sets: readonly string[];
  /** true: acceptance needs 0 failures; false: a control run that should see failures. */
  readonly zeroDowntime: boolean | null;
  readonly sigusr2: boolean;
}

const allVariants: readonly Variant[] = [
  { name: 'prestop', sets: [], zeroDowntime: true, sigusr2: true },
  // hyp's own SIGTERM handling still waits drain.delay: reported, not judged
  { name: 'no-prestop', sets: ['drain.preStop=false'], zeroDowntime: null, sigusr2: false },
  // a server that stops at SIGTERM: the endpoint-removal race must show
  {
    name: 'no-prestop-no-delay',
    sets: ['drain.preStop=false', 'drain.delaySeconds=0'],
    zeroDowntime: false,
    sigusr2: false,
  },
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stdout.write(`e2e: ${msg}\n`);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

async function buildImage(): Promise<string> {
  if (process.env.HYP_E2E_IMAGE) return process.env.HYP_E2E_IMAGE;
  const base = await run('bash', [join(repoRoot, 'test/e2e/base-image.sh')], { timeoutMs: 900_000 });
  if (base.code !== 0) throw new Error(`base-image.sh failed:\n${base.stderr}`);
  const tag = 'hyp:e2e';
  log(`docker build -t ${tag} .`);
  const build = await run('docker', ['build', '-q', '-t', tag, repoRoot], {
    timeoutMs: 1_200_000,
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
  });
  if (build.code !== 0) throw new Error(`docker build failed:\n${build.stdout.slice(-4000)}${build.stderr}`);
  const size = await docker(['image', 'inspect', '-f', '{{.Size}}', tag]);
  log(`image ${tag}: ${(Number(size) / 1e6).toFixed(0)} MB`);
  return tag;
}

interface Rendered {
  readonly spec: PodSpec;
  readonly maxSurge: string | number;
  readonly maxUnavailable: string | number;
  /** hyp's `drain.websocket_spread` in the rendered hyp.yaml (default 5 s). */
  readonly wsSpreadMs: number;
}

type Json = Record<string, unknown>;
const at = (obj: unknown, ...path: (string | number)[]): unknown =>
  path.reduce<unknown>((node, key) => (node as Json | undefined)?.[key as string], obj);

/** Render the chart and turn its Deployment into what the kubelet needs. */
async function render(image: string, sets: readonly string[], workDir: string): Promise<Rendered> {
  const helm = await helmBinary(helmReleases[0]);
  const [repository, tag] = image.split(':');
  const args = ['template', 'e2e', join(repoRoot, 'helm/hyp'), '--set', `image.repository=${repository}`];
  args.push('--set', `image.tag=${tag ?? 'latest'}`, '--set', `replicaCount=${replicas}`);
  // Two workers per pod, so an in-pod roll (SIGUSR2) replaces several (the chart's default follows the CPU request: 1).
  args.push('--set', 'config.supervisor.workers=2');
  for (const s of sets) args.push('--set', s);
  const out = await runHelm(helm, args);
  if (out.code !== 0) throw new Error(`helm template failed: ${out.stderr}`);
  const objects = parseAllDocuments(out.stdout)
    .map((d) => d.toJS() as Json | null)
    .filter((o): o is Json => o !== null);
  const deployment = objects.find((o) => o.kind === 'Deployment');
  const configMap = objects.find((o) => o.kind === 'ConfigMap');
  if (!deployment || !configMap) throw new Error('the chart rendered no Deployment or ConfigMap');

  const pod = at(deployment, 'spec', 'template', 'spec') as Json;
  const container = at(pod, 'containers', 0) as Json;
  const ports = new Map(
    (container.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]),
  );
  const portOf = (port: unknown): number =>
    typeof port === 'number' ? port : (ports.get(String(port)) ?? NaN);
  const env: Record<string, string> = {};
  for (const e of container.env as { name: string; value?: string }[])
    if (e.value !== undefined) env[e.name] = e.value;
  const readiness = container.readinessProbe as Json;
  const configVolume = (pod.volumes as { name: string; configMap?: unknown }[]).find((v) => v.configMap);
  const configMount = (container.volumeMounts as { name: string; mountPath: string }[]).find(
    (m) => m.name === configVolume?.name,
  );
  if (!configMount) throw new Error('the Deployment mounts no ConfigMap');

  const configDir = join(workDir, 'config');
  mkdirSync(configDir, { recursive: true });
  for (const [file, text] of Object.entries(configMap.data as Record<string, string>)) {
    writeFileSync(join(configDir, file), text);
  }

  const rolling = at(deployment, 'spec', 'strategy', 'rollingUpdate') as Json;
  const hypYaml = parse((configMap.data as Record<string, string>)['hyp.yaml'] ?? '') as Json | null;
  const spread = at(hypYaml, 'drain', 'websocket_spread');
  return {
    wsSpreadMs: typeof spread === 'string' ? durationMs(spread) : 5000,
    maxSurge: rolling.maxSurge as string,
    maxUnavailable: rolling.maxUnavailable as number,
    spec: {
      image: String(container.image),
      args: container.args as string[],
      env,
      httpPort: portOf('http'),
      adminPort: portOf('admin'),
      readiness: {
        path: String(at(readiness, 'httpGet', 'path')),
        port: portOf(at(readiness, 'httpGet', 'port')),
        periodSeconds: Number(readiness.periodSeconds ?? 10),
        timeoutSeconds: Number(readiness.timeoutSeconds ?? 1),
        successThreshold: Number(readiness.successThreshold ?? 1),
        failureThreshold: Number(readiness.failureThreshold ?? 3),
      },
      preStop: (at(container, 'lifecycle', 'preStop', 'exec', 'command') as string[] | undefined) ?? null,
      graceSeconds: Number(pod.terminationGracePeriodSeconds ?? 30),
      configDir,
      configMountPath: configMount.mountPath,
      runAsUser: Number(at(pod, 'securityContext', 'runAsUser') ?? 1000),
    },
  };
}

interface Generation {
  generation: number;
  ready: boolean;
}

async function supervisorStatus(container: string, adminPort: number): Promise<Generation> {
  const port = Number((await docker(['port', container, `${adminPort}/tcp`])).split(':').pop());
  const res = await fetch(`http://127.0.0.1:${port}/status`);
  const body = (await res.json()) as { generation?: number };
  const ready = (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200;
  return { generation: Number(body.generation ?? 0), ready };
}

interface ImageCheck {
  readonly uid: string;
  readonly ping: string;
  readonly exitCode: number;
  readonly stopMs: number;
}

/** The image as shipped: default user, read-only root, tmpfs /tmp, serves, stops with 0. */
async function checkImage(image: string): Promise<ImageCheck> {
  const name = `hyp-e2e-image-${process.pid}`;
  await docker([
    'run',
    '-d',
    '--name',
    name,
    '--read-only',
    '--tmpfs',
    '/tmp',
    '-p',
    '127.0.0.1::8080',
    image,
  ]);
  try {
    const port = Number((await docker(['port', name, '8080/tcp'])).split('\n')[0].split(':').pop());
    let ping = '';
    for (let i = 0; i < 100 && ping !== 'pong'; i++) {
      await sleep(200);
      ping = await fetch(`http://127.0.0.1:${port}/api/ping`).then(
        (r) => r.text(),
        () => '',
      );
    }
    const uid = await docker(['exec', name, 'id', '-u']);
    const started = Date.now();
    await docker(['stop', '-t', '40', name], 120_000);
    const stopMs = Date.now() - started;
    const { exitCode } = await exitState(name);
    return { uid, ping, exitCode, stopMs };
  } finally {
    await run('docker', ['rm', '-f', name]);
  }
}

const wsDefects = (r: WsLoadResult): number => r.lost + r.duplicated + r.outOfOrder + r.neverDelivered;

/**
 * Logs a WebSocket measurement: totals, the clients with a defect or not on
 * one of `expected` pods, and clients per pod. Returns how many clients end
 * connected to one of `expected`.
 */
function reportWs(
  tag: string,
  result: WsLoadResult,
  lb: HaproxyService,
  expected: readonly string[],
  settled: boolean,
): number {
  const { clients, neverDeliveredSeqs, publisherTrace, ...totals } = result;
  const onExpected = (c: WsClientResult) => c.connected && expected.includes(lb.podAt(c.server) ?? '');
  const count = clients.filter(onExpected).length;
  log(
    `${tag} websocket: ${JSON.stringify(totals)}; ${count}/${clients.length} clients end on ` +
      `${expected.join(', ')}${settled ? '' : ' (not all reconnected within 20 s)'}`,
  );
  for (const c of clients) {
    if (c.lost + c.duplicated + c.outOfOrder > 0 || !onExpected(c))
      log(`${tag}   ${JSON.stringify({ ...c, pod: lb.podAt(c.server) })}`);
  }
  if (result.neverDelivered > 0)
    log(`${tag}   never delivered: ${JSON.stringify({ neverDeliveredSeqs, publisherTrace })}`);
  const byPod = new Map<string, number>();
  for (const c of clients) {
    const pod = lb.podAt(c.server) ?? `unknown ${c.server}`;
    byPod.set(pod, (byPod.get(pod) ?? 0) + 1);
  }
  log(`${tag} websocket clients per pod at the end: ${JSON.stringify(Object.fromEntries(byPod))}`);
  return count;
}

interface VariantResult {
  readonly variant: string;
  readonly rollout: LoadResult;
  readonly ws: WsLoadResult;
  /** WebSocket clients connected to a pod of the new ReplicaSet at the end. */
  readonly wsOnNewPods: number;
  readonly terminations: readonly Termination[];
  readonly sigusr2: LoadResult | null;
  readonly usr2Ws: WsLoadResult | null;
  readonly verdict: 'pass' | 'fail' | 'report';
  readonly why: string;
}

async function runVariant(image: string, variant: Variant): Promise<VariantResult> {
  const workDir = mkdtempSync(join(tmpdir(), `hyp-e2e-${variant.name}-`));
  const name = `hyp-e2e-${variant.name}-${process.pid}`;
  const redis = await ClusterRedis.start(name);
  const busSets = ['config.websocket.bus.driver=redis', `config.websocket.bus.redis_url=${redis.url}`];
  const rendered = await render(image, [...variant.sets, ...busSets], workDir);
  const lbPort = await freePort();
  const lb = await HaproxyService.start(workDir, lbPort);
  const spec = { ...rendered.spec, network: redis.network };
  const kubelet = new Kubelet(spec, lb, propagationMs, name);
  try {
    log(
      `[${variant.name}] grace ${rendered.spec.graceSeconds}s, preStop ${JSON.stringify(rendered.spec.preStop)}, ` +
        `readiness every ${rendered.spec.readiness.periodSeconds}s, maxSurge ${rendered.maxSurge}, ` +
        `maxUnavailable ${rendered.maxUnavailable}, propagation ${propagationMs} ms; ` +
        `bus redis ${redis.url} (${(await redis.version()).split(' ').slice(0, 3).join(' ')})`,
    );
    const old: string[] = [];
    for (let i = 0; i < replicas; i++) old.push(await kubelet.startPod());
    log(`[${variant.name}] ${old.join(', ')} serving behind haproxy :${lbPort}`);

    const loadOptions = {
      origin: `http://127.0.0.1:${lbPort}`,
      path: '/api/ping',
      expectBody: 'pong',
      connections,
      maxRequests: 5_000_000,
      maxMs: 300_000,
    };
    const load = new HttpLoad(loadOptions);
    const wsOptions = (channel: string) => ({
      url: `ws://127.0.0.1:${lbPort}/ws`,
      channel,
      clients: wsClients,
      rate: wsRate,
      maxMessages: wsRate * 300,
      maxMs: 300_000,
    });
    const ws = await WsLoad.start(wsOptions(`rollout-${variant.name}`));
    log(`[${variant.name}] ${wsClients} WebSocket clients subscribed, publisher at ${wsRate} msg/s`);
    await sleep(2000);

    // kubectl rollout restart: surge one new pod, wait until it is an endpoint,
    // then delete one old pod (its termination runs on while the next surges).
    const terminations: Promise<Termination>[] = [];
    const fresh: string[] = [];
    for (const pod of old) {
      fresh.push(await kubelet.startPod());
      log(`[${variant.name}] ${fresh.at(-1)} ready and in the endpoints; deleting ${pod}`);
      terminations.push(kubelet.terminate(pod));
    }
    const ended = await Promise.all(terminations);
    // the last clients closed with 1001 wait the hinted delay plus backoff before reconnecting
    const settled = await ws.settle(20_000);
    await sleep(1000);
    const rollout = await load.stop();
    const wsResult = await ws.stop();
    log(`[${variant.name}] rollout: ${JSON.stringify(rollout)}`);
    const wsOnNewPods = reportWs(`[${variant.name}] rollout`, wsResult, lb, fresh, settled);
    for (const t of ended)
      log(
        `[${variant.name}] ${t.pod}: exit ${t.exitCode}${t.sigkilled ? ' (SIGKILL)' : ''}, preStop exit ${t.preStopExit}, ${t.ms} ms`,
      );

    let sigusr2: LoadResult | null = null;
    let usr2Ws: WsLoadResult | null = null;
    let usr2Rolled = 0;
    if (variant.sigusr2) {
      const pods = lb.endpoints();
      const restartLoad = new HttpLoad(loadOptions);
      const restartWs = await WsLoad.start(wsOptions(`sigusr2-${variant.name}`));
      await sleep(1000);
      for (const pod of pods) {
        const before = await supervisorStatus(pod, rendered.spec.adminPort);
        await docker(['kill', '-s', 'USR2', pod]);
        let after = before;
        for (let i = 0; i < 300 && !(after.generation > before.generation && after.ready); i++) {
          await sleep(100);
          after = await supervisorStatus(pod, rendered.spec.adminPort);
        }
        if (after.generation > before.generation) usr2Rolled++;
        else {
          const logs = await run('docker', ['logs', '--tail', '40', pod]);
          log(`[${variant.name}] ${pod}: SIGUSR2 did not roll; its log:\n${logs.stdout}${logs.stderr}`);
        }
        log(`[${variant.name}] ${pod}: SIGUSR2, generation ${before.generation} -> ${after.generation}`);
      }
      // the old workers close their WebSocket clients over drain.websocket_spread; let that finish
      await sleep(rendered.wsSpreadMs + 2000);
      const usr2Settled = await restartWs.settle(20_000);
      await sleep(1000);
      sigusr2 = await restartLoad.stop();
      usr2Ws = await restartWs.stop();
      log(`[${variant.name}] SIGUSR2 restart: ${JSON.stringify(sigusr2)}`);
      reportWs(`[${variant.name}] SIGUSR2`, usr2Ws, lb, pods, usr2Settled);
    }

    const cleanExits = ended.every((t) => t.exitCode === 0 && !t.sigkilled);
    const usr2Ok = !variant.sigusr2 || usr2Rolled === replicas;
    const failed = rollout.failed + (sigusr2?.failed ?? 0);
    const wsBad = wsDefects(wsResult) + (usr2Ws ? wsDefects(usr2Ws) : 0);
    const wsWhy =
      `${wsResult.lost} lost / ${wsResult.duplicated} duplicated / ${wsResult.outOfOrder} reordered ` +
      `WebSocket messages, ${wsResult.neverDelivered} never delivered` +
      (usr2Ws
        ? ` (SIGUSR2: ${usr2Ws.lost} / ${usr2Ws.duplicated} / ${usr2Ws.outOfOrder}, ${usr2Ws.neverDelivered})`
        : '') +
      ` (want 0); ${wsOnNewPods}/${wsClients} WS clients on new pods`;
    let verdict: VariantResult['verdict'] = 'report';
    let why = `${failed} failed requests; ${wsWhy}`;
    if (variant.zeroDowntime === true) {
      const wsOk = wsBad === 0 && wsOnNewPods === wsClients && wsResult.published > 0;
      verdict = failed === 0 && cleanExits && usr2Ok && rollout.ok > 0 && wsOk ? 'pass' : 'fail';
      why =
        `${failed} failed requests (want 0); ${wsWhy}; old pods ${cleanExits ? 'all exited 0' : 'did NOT all exit 0'}` +
        (variant.sigusr2 ? `; SIGUSR2 rolled ${usr2Rolled}/${replicas} pods` : '');
    } else if (variant.zeroDowntime === false) {
      verdict = rollout.failed > 0 ? 'pass' : 'fail';
      why = `${rollout.failed} failed requests (want > 0: the harness must see the race)`;
    }
    return {
      variant: variant.name,
      rollout,
      ws: wsResult,
      wsOnNewPods,
      terminations: ended,
      sigusr2,
      usr2Ws,
      verdict,
      why,
    };
  } finally {
    await kubelet.removeAll();
    await redis.stop();
    await lb.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const wanted = (process.env.HYP_E2E_VARIANTS ?? allVariants.map((v) => v.name).join(',')).split(',');
  const variants = allVariants.filter((v) => wanted.includes(v.name));
  const info = await run('docker', ['info', '--format', '{{.ServerVersion}}']);
  if (info.code !== 0) {
    process.stderr.write('e2e: no Docker engine answers; run test/e2e/docker-setup.sh first\n');
    return 1;
  }
  const image = await buildImage();
  await buildRedisImage(join(repoRoot, 'test/e2e/redis.Dockerfile'));
  const check = await checkImage(image);
  const imageOk =
    check.uid === '1000' && check.ping === 'pong' && check.exitCode === 0 && check.stopMs < 40_000;
  log(
    `image: uid ${check.uid}, read-only root + tmpfs /tmp, GET /api/ping -> ${JSON.stringify(check.ping)}, ` +
      `docker stop -> exit ${check.exitCode} after ${check.stopMs} ms (grace 40 s): ${imageOk ? 'PASS' : 'FAIL'}`,
  );
  const results: VariantResult[] = [];
  for (const variant of variants) results.push(await runVariant(image, variant));

  log('summary');
  for (const r of results) {
    const usr2 = r.sigusr2 ? `, SIGUSR2: ${r.sigusr2.requests} requests ${r.sigusr2.failed} failed` : '';
    const usr2Ws = r.usr2Ws
      ? ` (SIGUSR2: ${r.usr2Ws.published} published, ${r.usr2Ws.reconnects} reconnects)`
      : '';
    log(
      `  ${r.verdict.toUpperCase().padEnd(6)} ${r.variant}: rollout ${r.rollout.requests} requests, ` +
        `${r.rollout.failed} failed ${JSON.stringify(r.rollout.reasons)}, old pods exit ` +
        `${r.terminations.map((t) => t.exitCode).join('/')}${usr2}; WebSocket: ${r.ws.published} published ` +
        `(${((r.ws.published * 1000) / r.ws.publishMs).toFixed(0)}/s) to ${r.ws.clients.length} clients, ` +
        `${r.ws.reconnects} reconnects${usr2Ws} — ${r.why}`,
    );
  }
  const judged = results.filter((r) => r.verdict !== 'report');
  const failed = judged.filter((r) => r.verdict === 'fail').length + (imageOk ? 0 : 1);
  process.stdout.write(`${judged.length + 1 - failed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`e2e: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
