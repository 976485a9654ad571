/**
 * Values that would render a pod hyp refuses at start (exit 2, a restart
 * loop and a rollout that never ends) or a manifest the API server rejects
 * fail `helm template` / `helm install` instead, naming the value; the close
 * neighbours that are fine still render.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HelmRelease, helmBinary, helmReleases } from './helm.js';
import { loadRendered, removeTempFiles, template as renderChart } from './render.js';

describe.each(helmReleases)('$label', (release: HelmRelease) => {
  let helm = '';
  beforeAll(async () => {
    helm = await helmBinary(release);
  });

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
    const result = await renderChart(
      helm,
      sets.flatMap((s) => ['--set', s]),
    );
    expect(result.code).not.toBe(0);
    for (const word of named) expect(result.stderr).toContain(word);
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
});

afterAll(removeTempFiles);
