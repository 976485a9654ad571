/**
 * The Helm chart, checked without a cluster: both Helm 3 and Helm 4 lint it
 * strictly, every object it renders is a valid Kubernetes object with no
 * unknown field, the rendered hyp.yaml is accepted by hyp's own loader, and
 * the zero-downtime invariants hold for every CI values file.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../supervisor/config/load.js';
import { durationMs } from '../../supervisor/config/units.js';
import { chartDir, type HelmRelease, helmBinary, helmReleases, runHelm } from './helm.js';
import { type KubeObject, validateObject } from './kube-validate.js';
import {
  deploymentOf,
  find,
  hypYaml,
  monitoringApi,
  removeTempFiles,
  template as renderChart,
  writeTemp,
} from './render.js';
import { configValuesSchema, keyPaths } from './values-schema.js';

const ciValues = readdirSync(join(chartDir, 'ci'))
  .filter((f) => f.endsWith('-values.yaml'))
  .sort();

describe.each(helmReleases)('$label', (release: HelmRelease) => {
  let helm = '';
  const template = (...args: string[]) => renderChart(helm, args);

  beforeAll(async () => {
    helm = await helmBinary(release);
  });

  it.each(ciValues)('lints ci/%s with --strict: no error, no warning', async (file) => {
    const result = await runHelm(helm, ['lint', '--strict', chartDir, '-f', join(chartDir, 'ci', file)]);
    expect(result.stderr + result.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    expect(result.code).toBe(0);
  });

  it.each(ciValues)('renders ci/%s into valid Kubernetes objects with no unknown field', async (file) => {
    const { code, stderr, objects } = await template('-f', join(chartDir, 'ci', file), ...monitoringApi);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(objects.length).toBeGreaterThan(0);
    const problems = (await Promise.all(objects.map(validateObject))).flat();
    expect(problems).toEqual([]);
  });

  it.each(ciValues)('renders ci/%s with the zero-downtime invariants', async (file) => {
    const { objects } = await template('-f', join(chartDir, 'ci', file));
    const deployment = deploymentOf(objects);
    const pod = deployment.spec.template.spec;
    const [hyp] = pod.containers;
    const portOf = (name: string) => hyp.ports.find((p) => p.name === name)?.containerPort;

    // a new pod is ready before an old one goes
    expect(deployment.spec.strategy.type).toBe('RollingUpdate');
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    expect(deployment.spec.strategy.rollingUpdate.maxSurge).toBe('25%');

    // probes: the supervisor's view, on the admin port
    expect(hyp.startupProbe.httpGet).toEqual({ path: '/health', port: 'admin' });
    expect(hyp.livenessProbe.httpGet).toEqual({ path: '/health', port: 'admin' });
    expect(hyp.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'admin' });

    // the preStop drain, and a grace period covering it
    expect(hyp.lifecycle?.preStop?.exec?.command).toEqual(['hyp', 'drain', '--wait']);
    const config = loadConfig({ file: writeTemp(hypYaml(objects)), env: {} }).config;
    const drainSeconds = (durationMs(config.drain.delay) + durationMs(config.drain.timeout)) / 1000;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(drainSeconds);

    // hyp listens where the container ports and probes point
    expect(config.admin.addr).toBe(`:${portOf('admin')}`);
    expect(config.server.addr).toBe(`:${portOf('http')}`);
    for (const [name, svc] of Object.entries(config.tcp)) expect(svc.addr).toBe(`:${portOf(`tcp-${name}`)}`);

    // locked-down container that writes only to /tmp
    expect(hyp.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    const tmpMount = hyp.volumeMounts.find((m) => m.mountPath === '/tmp');
    expect(pod.volumes.find((v) => v.name === tmpMount?.name)?.emptyDir).toBeDefined();
    expect(config.supervisor.pid_file.startsWith('/tmp/')).toBe(true);

    // the config comes from the ConfigMap, whose checksum rolls the pods
    expect(hyp.env).toContainEqual({ name: 'HYP_CONFIG', value: '/etc/hyp/config/hyp.yaml' });
    expect(deployment.spec.template.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);

    // the admin port stays private unless asked for
    const service = find(objects, 'Service', 'rel-hyp') as unknown as { spec: { ports: { name: string }[] } };
    const exposeAdmin = file === 'full-values.yaml';
    expect(service.spec.ports.some((p) => p.name === 'admin')).toBe(exposeAdmin);
  });

  it('derives the grace period from drain.delaySeconds + drain.timeoutSeconds + margin', async () => {
    const { objects } = await template(
      '--set',
      'drain.delaySeconds=12',
      '--set',
      'drain.timeoutSeconds=50',
      '--set',
      'drain.graceMarginSeconds=3',
    );
    expect(deploymentOf(objects).spec.template.spec.terminationGracePeriodSeconds).toBe(65);
    const { drain } = loadConfig({ file: writeTemp(hypYaml(objects)), env: {} }).config;
    expect([drain.delay, drain.timeout]).toEqual(['12s', '50s']);
  });

  it('changes the config checksum when the config changes, so the pods roll', async () => {
    const before = deploymentOf((await template()).objects).spec.template.metadata.annotations;
    const after = deploymentOf((await template('--set', 'config.log.level=debug')).objects).spec.template
      .metadata.annotations;
    expect(after['checksum/config']).not.toBe(before['checksum/config']);
  });

  it('drops the preStop hook when drain.preStop=false (the e2e control run)', async () => {
    const { objects } = await template('--set', 'drain.preStop=false');
    expect(deploymentOf(objects).spec.template.spec.containers[0].lifecycle).toBeUndefined();
  });

  it('mounts the TLS Secret and points hyp at it when tls.enabled', async () => {
    const { objects } = await template('--set', 'tls.enabled=true', '--set', 'tls.secretName=site-tls');
    const pod = deploymentOf(objects).spec.template.spec;
    expect(pod.volumes).toContainEqual({ name: 'tls', secret: { secretName: 'site-tls' } });
    expect(pod.containers[0].volumeMounts).toContainEqual({
      name: 'tls',
      mountPath: '/etc/hyp/tls',
      readOnly: true,
    });
    const config = loadConfig({ file: writeTemp(hypYaml(objects)), env: {} }).config;
    expect(config.server.tls).toMatchObject({
      enabled: true,
      cert_file: '/etc/hyp/tls/tls.crt',
      key_file: '/etc/hyp/tls/tls.key',
    });
  });

  it('refuses tls.enabled without tls.secretName', async () => {
    const result = await template('--set', 'tls.enabled=true');
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('tls.secretName is required');
  });

  it.each([
    ['a misspelled chart value', 'drain.delaySecond=5', 'delaySecond'],
    ['a misspelled nested chart value', 'probes.readiness.periodSecond=1', 'periodSecond'],
    ['a misspelled hyp.yaml key under config', 'config.drain.websocket_sprad=1s', 'websocket_sprad'],
    ['a chart-owned hyp.yaml key under config', 'config.server.addr=:1', 'addr'],
    ['a value of the wrong type', 'replicaCount=two', 'replicaCount'],
  ])('fails helm template on %s', async (_what, set, named) => {
    const result = await template('--set', set);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(named);
  });

  it('renders ServiceMonitor and PodMonitor only when the monitoring.coreos.com/v1 API exists', async () => {
    const enabled = [
      '--set',
      'metrics.serviceMonitor.enabled=true',
      '--set',
      'metrics.podMonitor.enabled=true',
    ];
    const kindsOf = (objects: KubeObject[]) => objects.map((o) => o.kind);

    const withApi = await template(...enabled, ...monitoringApi);
    expect(kindsOf(withApi.objects)).toEqual(expect.arrayContaining(['ServiceMonitor', 'PodMonitor']));
    const metricsService = find(withApi.objects, 'Service', 'rel-hyp-metrics') as unknown as {
      spec: { ports: { name: string }[] };
    };
    expect(metricsService.spec.ports.map((p) => p.name)).toEqual(['admin']);

    const withoutApi = await template(...enabled);
    expect(kindsOf(withoutApi.objects)).not.toContain('ServiceMonitor');
    expect(kindsOf(withoutApi.objects)).not.toContain('PodMonitor');
  });
});

describe('values.schema.json', () => {
  const file = join(chartDir, 'values.schema.json');
  const schema = JSON.parse(readFileSync(file, 'utf8')) as { properties: { config: unknown } };

  it('allows under `config` only keys that hyp.yaml has (regenerate: HYP_WRITE_VALUES_SCHEMA=1)', () => {
    const generated = configValuesSchema();
    if (process.env.HYP_WRITE_VALUES_SCHEMA === '1') {
      schema.properties.config = generated;
      writeFileSync(file, `${JSON.stringify(schema, null, 2)}\n`);
    }
    const allowed = new Set(keyPaths(generated));
    expect(keyPaths(schema.properties.config).filter((path) => !allowed.has(path))).toEqual([]);
    expect(keyPaths(schema.properties.config).length).toBeGreaterThan(20);
  });

  it('closes every object and describes every property', () => {
    const problems: string[] = [];
    const walk = (node: Record<string, unknown>, path: string, passThrough: boolean) => {
      if (node.type === 'object' && !passThrough && node.additionalProperties === undefined) {
        problems.push(`${path || '(root)'}: additionalProperties not set`);
      }
      for (const [name, child] of Object.entries(
        (node.properties ?? {}) as Record<string, Record<string, unknown>>,
      )) {
        if (!child.description && !path.startsWith('config'))
          problems.push(`${path}.${name}: no description`);
        const childPassThrough =
          name === 'global' || /Kubernetes object/.test(String(child.description ?? ''));
        walk(child, path ? `${path}.${name}` : name, childPassThrough);
      }
      for (const child of Object.values(
        (node.patternProperties ?? {}) as Record<string, Record<string, unknown>>,
      )) {
        walk(child, `${path}.*`, false);
      }
      if (node.items && typeof node.items === 'object')
        walk(node.items as Record<string, unknown>, `${path}[]`, passThrough);
    };
    walk(schema as unknown as Record<string, unknown>, '', false);
    expect(problems).toEqual([]);
  });
});

afterAll(removeTempFiles);
