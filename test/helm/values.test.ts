/**
 * Values that would render a pod hyp refuses at start (exit 2, a restart
 * loop and a rollout that never ends) or a manifest the API server rejects
 * fail `helm template` / `helm install` instead, naming the value; the close
 * neighbours that are fine still render.
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chartDir, type HelmRelease, helmBinary, helmReleases } from './helm.js';
import type { KubeObject } from './kube-validate.js';
import { loadRendered, monitoringApi, removeTempFiles, template as renderChart } from './render.js';

const dns1035Label = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** What the API server would refuse in names and label values (apimachinery validation). */
function nameProblems(objects: KubeObject[]): string[] {
  const problems: string[] = [];
  const labels = (where: string, map: unknown) => {
    for (const [key, value] of Object.entries((map ?? {}) as Record<string, string>))
      if (!labelValue.test(value)) problems.push(`${where} label ${key}: ${JSON.stringify(value)}`);
  };
  const walk = (where: string, node: unknown) => {
    if (Array.isArray(node)) for (const [i, item] of node.entries()) walk(`${where}[${i}]`, item);
    else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'labels' || key === 'matchLabels') labels(`${where}.${key}`, value);
        else walk(`${where}.${key}`, value);
      }
    }
  };
  for (const obj of objects) {
    const id = `${obj.kind}/${obj.metadata.name}`;
    const rule = obj.kind === 'Service' ? dns1035Label : dns1123Subdomain;
    if (!rule.test(obj.metadata.name)) problems.push(`${id}: name (${obj.metadata.name.length} characters)`);
    walk(id, obj);
  }
  return problems;
}

describe.each(helmReleases)('$label', (release: HelmRelease) => {
  let helm = '';
  beforeAll(async () => {
    helm = await helmBinary(release);
  });

  /** `helm template` with `sets` fails, its message naming every one of `named`. */
  async function expectRefused(sets: string[], named: string[]): Promise<void> {
    const result = await renderChart(
      helm,
      sets.flatMap((s) => ['--set', s]),
    );
    expect(result.code).not.toBe(0);
    for (const word of named) expect(result.stderr).toContain(word);
  }

  it.each([
    ['the admin port on the HTTP port', ['ports.admin=8080'], ['ports.admin', '8080', 'ports.http']],
    ['a TCP service on the HTTP port', ['tcp.echo.port=8080'], ['tcp.echo.port', '8080', 'ports.http']],
    ['a TCP service on the admin port', ['tcp.echo.port=9090'], ['tcp.echo.port', '9090', 'ports.admin']],
    ['two TCP services on one port', ['tcp.chat.port=7000'], ['tcp.echo.port', '7000', 'tcp.chat.port']],
    [
      'the Service HTTP port on a TCP service port',
      ['service.port=7000'],
      ['service.port', '7000', 'tcp.echo'],
    ],
    [
      'the exposed admin port on the Service HTTP port',
      ['service.exposeAdmin=true', 'service.port=9090'],
      ['9090', 'service.port', 'ports.admin'],
    ],
  ])('refuses %s, naming both values', async (_what, sets, named) => {
    await expectRefused(sets, named);
  });

  it.each([
    ['admin', 'a name hyp keeps for its own listeners'],
    ['http', 'a name hyp keeps for its own listeners'],
    ['h3', 'a name hyp keeps for its own listeners'],
    ['chat-', 'a port name may not end in -'],
    ['a--b', 'a port name may not hold --'],
  ])('refuses the TCP service name %s (%s)', async (name) => {
    const result = await renderChart(helm, ['--set', `tcp.${name}.port=7100`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`tcp.${name}`);
  });

  it('renders TCP services with distinct ports and names such as a-b and an 11-character name', async () => {
    const result = await renderChart(helm, [
      '--set',
      'tcp.a-b.port=7100',
      '--set',
      'tcp.abcdefghijk.port=7200',
      '--set',
      'tcp.abcdefghijk.servicePort=7201',
    ]);
    expect(result.stderr).toBe('');
    expect(Object.keys(loadRendered(result.objects).config.tcp).sort()).toEqual([
      'a-b',
      'abcdefghijk',
      'echo',
    ]);
  });

  it.each([
    ['PORT', 'ports.http', '3000'],
    ['HYP_SERVER_ADDR', 'ports.http', ':3000'],
    ['HYP_ADMIN_ADDR', 'ports.admin', ':9999'],
    ['HYP_DRAIN_DELAY', 'drain.delaySeconds', '60s'],
    ['HYP_DRAIN_TIMEOUT', 'drain.timeoutSeconds', '120s'],
    ['HYP_SUPERVISOR_PID_FILE', 'supervisor.pid_file', '/var/run/hyp.pid'],
    ['HYP_TCP_ECHO_ADDR', 'tcp.<name>.port', ':7001'],
    ['HYP_CONFIG', 'config', '/etc/other.yaml'],
  ])('refuses extraEnv %s, which would override what the chart sets from %s', async (name, from, value) => {
    const result = await renderChart(helm, [
      '--set',
      `extraEnv[0].name=${name}`,
      '--set-string',
      `extraEnv[0].value=${value}`,
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(name);
    expect(result.stderr).toContain(from);
  });

  it.each([
    [['--set', 'drain.delay=60s'], 'drain.delaySeconds'],
    [['--set=server.addr=:3000'], 'ports.http'],
    [['--set', 'tcp.echo.addr=:7001'], 'tcp.<name>.port'],
    [['--config', '/app/hyp.yaml'], 'config'],
    [['-c', '/app/hyp.yaml'], 'config'],
  ])('refuses app.extraArgs %j, which would override what the chart sets from %s', async (args, from) => {
    const result = await renderChart(helm, ['--set-json', `app.extraArgs=${JSON.stringify(args)}`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('app.extraArgs');
    expect(result.stderr).toContain(from);
  });

  it('still takes extraEnv and app.extraArgs for keys the chart leaves to the user', async () => {
    const result = await renderChart(helm, [
      '--set',
      'extraEnv[0].name=HYP_LOG_LEVEL',
      '--set',
      'extraEnv[0].value=debug',
      '--set',
      'extraEnv[1].name=HYP_TCP_ECHO_IDLE_TIMEOUT',
      '--set',
      'extraEnv[1].value=1m',
      '--set-json',
      'app.extraArgs=["--set","log.level=debug"]',
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it.each([
    [
      'a PodDisruptionBudget that lets no pod be evicted (minAvailable = replicaCount)',
      ['replicaCount=2', 'podDisruptionBudget.minAvailable=2'],
      ['podDisruptionBudget.minAvailable', 'replicaCount'],
    ],
    [
      'a PodDisruptionBudget that lets no pod be evicted (maxUnavailable 0)',
      ['podDisruptionBudget.maxUnavailable=0'],
      ['podDisruptionBudget.maxUnavailable'],
    ],
    [
      'a PodDisruptionBudget that lets no pod be evicted at the HPA minimum',
      ['autoscaling.enabled=true', 'autoscaling.minReplicas=2', 'podDisruptionBudget.minAvailable=2'],
      ['podDisruptionBudget.minAvailable', 'autoscaling.minReplicas'],
    ],
    [
      'an HPA whose minReplicas is above maxReplicas',
      ['autoscaling.enabled=true', 'autoscaling.minReplicas=5', 'autoscaling.maxReplicas=3'],
      ['autoscaling.minReplicas', 'autoscaling.maxReplicas'],
    ],
    [
      'an HPA CPU target without a CPU request to measure it against',
      ['autoscaling.enabled=true', 'resources.requests.cpu=null'],
      ['autoscaling.targetCPUUtilizationPercentage', 'resources.requests.cpu'],
    ],
    [
      'an HPA memory target without a memory request',
      [
        'autoscaling.enabled=true',
        'autoscaling.targetMemoryUtilizationPercentage=80',
        'resources.requests.memory=null',
      ],
      ['autoscaling.targetMemoryUtilizationPercentage', 'resources.requests.memory'],
    ],
    [
      'an HPA with no target at all (Kubernetes would silently scale on 80% CPU)',
      ['autoscaling.enabled=true', 'autoscaling.targetCPUUtilizationPercentage=null'],
      ['autoscaling.targetCPUUtilizationPercentage'],
    ],
  ])('refuses %s, naming the values', async (_what, sets, named) => {
    await expectRefused(sets, named);
  });

  it.each([
    ['one replica, the default PDB (maxUnavailable 1)', ['replicaCount=1']],
    ['minAvailable below the replica count', ['replicaCount=3', 'podDisruptionBudget.minAvailable=2']],
    ['a percentage', ['podDisruptionBudget.minAvailable=50%']],
    ['the HPA on CPU with the default requests', ['autoscaling.enabled=true']],
  ])('renders %s', async (_what, sets) => {
    const result = await renderChart(
      helm,
      sets.flatMap((s) => ['--set', s]),
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('refuses drain.graceMarginSeconds below 2: the drain itself starts late and ends with closing the sockets', async () => {
    // the preStop's `hyp drain` starts a Node process before it asks for the drain, polls
    // every 250 ms, and the supervisor still closes its sockets and exits after drain.timeout
    const result = await renderChart(helm, ['--set', 'drain.graceMarginSeconds=0']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('graceMarginSeconds');
  });

  it.each([
    ['the longest release name Helm allows (53 characters)', 'r'.repeat(49) + '-web', []],
    ['a 63-character fullnameOverride', 'rel', ['--set', `fullnameOverride=${'f'.repeat(63)}`]],
    ['a 70-character image tag', 'rel', ['--set', `image.tag=1.2.3-build.${'0123456789'.repeat(6)}`]],
  ])('renders names and labels the API server accepts with %s', async (_what, name, args) => {
    const full = ['-f', join(chartDir, 'ci', 'full-values.yaml'), ...monitoringApi];
    const { code, stderr, objects } = await renderChart(helm, [...full, ...args], name);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(nameProblems(objects)).toEqual([]);
  });
});

afterAll(removeTempFiles);
