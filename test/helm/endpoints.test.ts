/**
 * The chart and the endpoint-aware drain: with drain.waitForEndpoints (off by
 * default: the Kubernetes client costs the supervisor ~60 MB) hyp.yaml names the chart's own Service, the pod gets its name and
 * namespace from the downward API, and the Role grants exactly what the drain
 * calls (list and watch EndpointSlices), nothing else. Also the version label
 * every object carries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endpointsTarget } from '../../supervisor/endpoints.js';
import { type HelmRelease, helmBinary, helmReleases } from './helm.js';
import type { KubeObject } from './kube-validate.js';
import { deploymentOf, find, loadRendered, removeTempFiles, template as renderChart } from './render.js';

interface RoleShape {
  rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
}
interface BindingShape {
  roleRef: { kind: string; name: string };
  subjects: { kind: string; name: string; namespace: string }[];
}

const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

describe.each(helmReleases)('$label', (release: HelmRelease) => {
  let helm = '';
  const template = (...args: string[]) => renderChart(helm, args);
  beforeAll(async () => {
    helm = await helmBinary(release);
  });

  it("drain.waitForEndpoints=true: the drain watches the chart's Service, as the pod named by the downward API", async () => {
    const { code, stderr, objects } = await template('--set', 'drain.waitForEndpoints=true');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const { config } = loadRendered(objects);
    expect(config.drain.endpoints.service).toBe('rel-hyp');
    const service = find(objects, 'Service', config.drain.endpoints.service) as unknown as {
      spec: { selector: Record<string, string> };
    };
    const pod = deploymentOf(objects).spec.template as unknown as {
      metadata: { labels: Record<string, string> };
      spec: { serviceAccountName: string; automountServiceAccountToken: boolean };
    };
    // the Service selects the pod, so the pod is in its EndpointSlices
    expect(pod.metadata.labels).toMatchObject(service.spec.selector);
    expect(pod.spec.automountServiceAccountToken).toBe(true);

    const [hyp] = deploymentOf(objects).spec.template.spec.containers;
    expect(hyp!.env).toContainEqual({
      name: 'POD_NAME',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
    expect(hyp!.env).toContainEqual({
      name: 'POD_NAMESPACE',
      valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } },
    });
    // what hyp makes of it in the pod (the kubelet resolves the downward API)
    const env = { POD_NAME: 'rel-hyp-7d9c5b6f4-abcde', POD_NAMESPACE: 'web' };
    expect(endpointsTarget(config.drain.endpoints, env, '/nonexistent')).toEqual({
      target: { service: 'rel-hyp', namespace: 'web', pod: 'rel-hyp-7d9c5b6f4-abcde' },
    });

    const role = find(objects, 'Role', 'rel-hyp') as unknown as RoleShape;
    expect(role.rules).toEqual([
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
    ]);
    const binding = find(objects, 'RoleBinding', 'rel-hyp') as unknown as BindingShape;
    expect(binding.roleRef).toMatchObject({ kind: 'Role', name: 'rel-hyp' });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: pod.spec.serviceAccountName, namespace: 'web' },
    ]);
  });

  it.each([
    ['by default', []],
    ['drain.waitForEndpoints=false', ['--set', 'drain.waitForEndpoints=false']],
  ])('%s: no watch, and no Role (nothing calls the API)', async (_what, args) => {
    const { code, stderr, objects } = await template(...args);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(loadRendered(objects).config.drain.endpoints.service).toBe('');
    expect(objects.map((o) => o.kind)).not.toContain('Role');
    expect(objects.map((o) => o.kind)).not.toContain('RoleBinding');
  });

  it('drain.waitForEndpoints=false with config.drain.endpoints.service: the Role is rendered for that Service', async () => {
    const { code, objects } = await template(
      '--set',
      'drain.waitForEndpoints=false',
      '--set',
      'config.drain.endpoints.service=edge',
    );
    expect(code).toBe(0);
    expect(loadRendered(objects).config.drain.endpoints.service).toBe('edge');
    expect((find(objects, 'Role') as unknown as RoleShape).rules[0]?.resources).toEqual(['endpointslices']);
  });

  it.each([
    [['--set', 'config.drain.endpoints.service=other'], 'config.drain.endpoints.service'],
    [
      ['--set', 'extraEnv[0].name=HYP_DRAIN_ENDPOINTS_SERVICE', '--set', 'extraEnv[0].value=other'],
      'drain.waitForEndpoints',
    ],
    [['--set-json', 'app.extraArgs=["--set","drain.endpoints.service=other"]'], 'drain.waitForEndpoints'],
  ])('with drain.waitForEndpoints, refuses %j (the chart sets the Service)', async (args, named) => {
    const result = await template('--set', 'drain.waitForEndpoints=true', ...args);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(named);
  });

  it.each([
    ['the chart appVersion when image.tag is empty', [], '0.1.0'],
    ['image.tag', ['--set', 'image.tag=1.4.2'], '1.4.2'],
    ['a tag with characters a label may not hold', ['--set', 'image.tag=v2+build.7'], 'v2_build.7'],
    [
      'a 128-character tag, cut to 63',
      ['--set', `image.tag=${'a'.repeat(62)}-${'b'.repeat(65)}`],
      `${'a'.repeat(62)}`,
    ],
    ['a tag of digits only', ['--set-string', 'image.tag=2'], '2'],
  ])('labels every object app.kubernetes.io/version from %s', async (_what, args, version) => {
    const { code, stderr, objects } = await template(...args);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const versions = new Set(
      objects.map(
        (o: KubeObject) =>
          (o.metadata as { labels?: Record<string, string> }).labels?.['app.kubernetes.io/version'],
      ),
    );
    expect([...versions]).toEqual([version]);
    expect(version).toMatch(labelValue);
  });
});

afterAll(removeTempFiles);
