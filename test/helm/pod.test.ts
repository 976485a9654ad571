/**
 * What the rendered pod does once Kubernetes runs it: the environment the
 * kubelet gives it, the worker count hyp derives, the names the API accepts.
 * Checked by modelling the kubelet's rules and loading the rendered hyp.yaml
 * with hyp's own loader; no cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { Config } from '../../supervisor/config/schema.js';
import { type HelmRelease, helmBinary, helmReleases } from './helm.js';
import { validateObject } from './kube-validate.js';
import { containerEnv } from './kubelet-env.js';
import {
  deploymentOf,
  hypYaml,
  loadRendered,
  removeTempFiles,
  template as renderChart,
  type ServiceShape,
} from './render.js';

/** A big node: hyp's `workers: 0` means one worker per CPU the container may use. */
const nodeCpus = 64;

function cpuQuantity(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  const text = String(q);
  return text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text);
}

/** Workers hyp starts in the pod (supervisor/cpus.ts: node CPUs capped by the cgroup quota = limits.cpu). */
function workersStarted(config: Config, limitsCpu: number | undefined): number {
  if (config.supervisor.workers > 0) return config.supervisor.workers;
  return Math.max(1, limitsCpu === undefined ? nodeCpus : Math.min(nodeCpus, Math.ceil(limitsCpu)));
}

describe.each(helmReleases)('$label', (release: HelmRelease) => {
  let helm = '';
  beforeAll(async () => {
    helm = await helmBinary(release);
  });

  it.each([
    ['hyp', 'its own Service is named hyp'],
    ['hyp-tcp', 'its own Service is named hyp-tcp, whose link variables look like hyp tcp.<name>.addr keys'],
  ])('starts with no config error or warning from Service link variables (release %s: %s)', async (name) => {
    const { code, stderr, objects } = await renderChart(helm, [], name);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const services = objects.filter((o) => o.kind === 'Service') as unknown as ServiceShape[];
    // every pod in the namespace sees the Services created with it, from the next pod start on
    const env = containerEnv(deploymentOf(objects).spec.template.spec, services);
    const loaded = loadRendered(objects, env);
    expect(loaded.warnings).toEqual([]);
    expect(Object.keys(loaded.config.tcp)).toEqual(['echo']);
  });

  it.each([
    ['the defaults (requests.cpu 100m, no CPU limit)', [], 1],
    ['requests.cpu=1500m, no CPU limit', ['--set', 'resources.requests.cpu=1500m'], 2],
    ['requests.cpu=2 as a number', ['--set', 'resources.requests.cpu=2'], 2],
    ['requests.cpu=0.5 as a number', ['--set', 'resources.requests.cpu=0.5'], 1],
    ['limits.cpu=3', ['--set', 'resources.limits.cpu=3'], 3],
    ['config.supervisor.workers=4', ['--set', 'config.supervisor.workers=4'], 4],
  ])('starts as many workers as the pod has CPUs, not the node: %s', async (_what, args, workers) => {
    const { objects } = await renderChart(helm, args);
    const [hyp] = deploymentOf(objects).spec.template.spec.containers;
    const { config } = loadRendered(objects);
    expect(workersStarted(config, cpuQuantity(hyp!.resources?.limits?.cpu))).toBe(workers);
  });

  it.each([
    ['off', 'http', [], undefined],
    ['on', 'https', ['--set', 'tls.enabled=true', '--set', 'tls.secretName=site-tls'], true],
  ])(
    'with tls %s, names the HTTP Service port protocol %s for meshes, Gateways and cloud load balancers',
    async (_tls, appProtocol, args, tlsEnabled) => {
      const { objects } = await renderChart(helm, args);
      const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'rel-hyp') as unknown as
        | ServiceShape
        | undefined;
      expect(service?.spec.ports.find((p) => p.name === 'http')?.appProtocol).toBe(appProtocol);
      expect(loadRendered(objects).config.server.tls.enabled || undefined).toBe(tlsEnabled);
    },
  );

  it('mounts the Secret that holds a file hyp.yaml names (admin token, WebSocket keys) from extraVolumes', async () => {
    const { code, stderr, objects } = await renderChart(helm, [
      '--set',
      'config.admin.token_file=/etc/hyp/secrets/admin-token',
      '--set',
      'config.websocket.security.hmac_key_file=/etc/hyp/secrets/hmac.key',
      '--set-json',
      'extraVolumes=[{"name":"secrets","secret":{"secretName":"hyp-secrets","defaultMode":288}}]',
      '--set-json',
      'extraVolumeMounts=[{"name":"secrets","mountPath":"/etc/hyp/secrets","readOnly":true}]',
    ]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const pod = deploymentOf(objects).spec.template.spec;
    const config = parse(hypYaml(objects)) as Config;
    for (const file of [config.admin.token_file, config.websocket.security.hmac_key_file]) {
      const mount = pod.containers[0]!.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
      expect(pod.volumes.find((v) => v.name === mount?.name)?.secret?.secretName).toBe('hyp-secrets');
    }
    expect((await Promise.all(objects.map(validateObject))).flat()).toEqual([]);
  });

  it('keeps hyp auto-sizing when config.supervisor.workers is 0 on purpose', async () => {
    const { objects } = await renderChart(helm, ['--set', 'config.supervisor.workers=0']);
    expect(loadRendered(objects).config.supervisor.workers).toBe(0);
  });
});

afterAll(removeTempFiles);
