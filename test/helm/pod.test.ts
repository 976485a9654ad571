/**
 * What the rendered pod does once Kubernetes runs it: the environment the
 * kubelet gives it, the worker count hyp derives, the names the API accepts.
 * Checked by modelling the kubelet's rules and loading the rendered hyp.yaml
 * with hyp's own loader; no cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HelmRelease, helmBinary, helmReleases } from './helm.js';
import { containerEnv } from './kubelet-env.js';
import {
  deploymentOf,
  loadRendered,
  removeTempFiles,
  template as renderChart,
  type ServiceShape,
} from './render.js';

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
});

afterAll(removeTempFiles);
