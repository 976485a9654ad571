import { describe, expect, it } from 'vitest';
import { type KubeObject, validateObject } from './kube-validate.js';

const deployment = (spec: Record<string, unknown>): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', labels: { app: 'web' } },
  spec: {
    selector: { matchLabels: { app: 'web' } },
    template: {
      metadata: { labels: { app: 'web' } },
      spec: { containers: [{ name: 'web', image: 'hyp:1', ports: [{ containerPort: 8080 }] }] },
    },
    ...spec,
  },
});

describe('validateObject', () => {
  it('accepts a valid Deployment', async () => {
    expect(await validateObject(deployment({ replicas: 2 }))).toEqual([]);
  });

  it('names a field the Kubernetes API does not define, with its path', async () => {
    const obj = deployment({});
    const pod = (obj.spec as { template: { spec: { containers: Record<string, unknown>[] } } }).template.spec;
    pod.containers[0].readinessProbe = { httpGet: { path: '/ready', port: 9090, pth: '/x' } };
    expect(await validateObject(obj)).toEqual([
      'Deployment/web: unknown field spec.template.spec.containers[0].readinessProbe.httpGet.pth',
    ]);
  });

  it('refuses a value of the wrong type', async () => {
    const problems = await validateObject(deployment({ replicas: 'two' }));
    expect(problems.join('\n')).toMatch(/Deployment\/web: .*replicas/);
  });

  it('refuses a kind it has no validator for', async () => {
    const obj: KubeObject = { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'x' } };
    expect(await validateObject(obj)).toEqual(['CronJob/x: no validator for batch/v1 CronJob']);
  });
});
