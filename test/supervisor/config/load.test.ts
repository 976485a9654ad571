/**
 * Config precedence and validation: defaults < file < HYP_* env < --set.
 */
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, envName, jsonSchema, leafPaths, loadConfig } from '../../../supervisor/config/load.js';
import { parseAddress, parseDuration, parseSize } from '../../../supervisor/config/units.js';
import { serviceLinkEnv } from '../../helm/kubelet-env.js';
import { issuesOf } from './issues.js';

function dir(files: Record<string, string> = {}): string {
  const d = mkdtempSync(join(tmpdir(), 'hyp-cfg-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

describe('config precedence', () => {
  it('uses the defaults with no file, env or --set', () => {
    const { config, file } = loadConfig({ env: {}, cwd: dir() });
    expect(file).toBeUndefined();
    expect(config.server.addr).toBe(':8080');
    expect(config.admin.addr).toBe(':9090');
    expect(config.drain).toMatchObject({ delay: '5s', timeout: '25s' });
    expect(config.supervisor).toMatchObject({
      workers: 0,
      heartbeat_timeout: '10s',
      pid_file: '/tmp/hyp.pid',
    });
  });

  it('file overrides defaults, env overrides file, --set overrides env', () => {
    const cwd = dir({ 'hyp.yaml': 'drain:\n  delay: 7s\n  timeout: 9s\nsupervisor:\n  workers: 3\n' });
    const env = { HYP_DRAIN_DELAY: '11s', HYP_SUPERVISOR_WORKERS: '4' };
    const { config } = loadConfig({ env, cwd, sets: ['supervisor.workers=5'] });
    expect(config.drain.delay).toBe('11s');
    expect(config.drain.timeout).toBe('9s');
    expect(config.supervisor.workers).toBe(5);
  });

  it('maps the documented env names', () => {
    const env = {
      HYP_SERVER_ADDR: '127.0.0.1:1234',
      HYP_ADMIN_ADDR: '127.0.0.1:1235',
      HYP_SUPERVISOR_WORKERS: '2',
      HYP_SUPERVISOR_PID_FILE: join(dir(), 'x.pid'),
      HYP_DRAIN_DELAY: '1s',
      HYP_DRAIN_TIMEOUT: '2s',
      HYP_SERVER_TLS_ENABLED: 'false',
    };
    const { config } = loadConfig({ env, cwd: dir() });
    expect(config.server.addr).toBe('127.0.0.1:1234');
    expect(config.admin.addr).toBe('127.0.0.1:1235');
    expect(config.supervisor.workers).toBe(2);
    expect(config.supervisor.pid_file).toBe(env.HYP_SUPERVISOR_PID_FILE);
    expect(config.drain).toMatchObject({ delay: '1s', timeout: '2s' });
    expect(envName(['server', 'tls', 'cert_file'])).toBe('HYP_SERVER_TLS_CERT_FILE');
    expect(leafPaths().map((p) => p.join('.'))).toContain('websocket.security.aes_key_file');
  });

  it('PORT sets the HTTP port and keeps the host; HYP_SERVER_ADDR wins over PORT', () => {
    const cwd = dir({ 'hyp.yaml': 'server:\n  addr: 127.0.0.1:8080\n' });
    expect(loadConfig({ env: { PORT: '3000' }, cwd }).config.server.addr).toBe('127.0.0.1:3000');
    expect(loadConfig({ env: { PORT: '3000', HYP_SERVER_ADDR: ':4000' }, cwd }).config.server.addr).toBe(
      ':4000',
    );
  });

  it('maps record services from env: HYP_TCP_<NAME>_ADDR', () => {
    const { config } = loadConfig({
      env: { HYP_TCP_ECHO_ADDR: ':7001', HYP_TCP_ECHO_IDLE_TIMEOUT: '3s' },
      cwd: dir(),
    });
    expect(config.tcp.echo).toMatchObject({ addr: ':7001', idle_timeout: '3s', max_connections: 10_000 });
  });

  it('reports unknown HYP_* variables as warnings, not errors', () => {
    const { warnings } = loadConfig({ env: { HYP_SERVR_ADDR: ':1' }, cwd: dir() });
    expect(warnings.join()).toContain('HYP_SERVR_ADDR');
  });
});

describe('config validation names the key path, the value and what was expected', () => {
  it('refuses unknown keys', () => {
    const issues = issuesOf(() =>
      loadConfig({ env: {}, cwd: dir({ 'hyp.yaml': 'server:\n  adr: ":1"\n' }) }),
    );
    expect(issues[0]).toMatchObject({ path: 'server.adr', value: ':1' });
    expect(issues[0]!.expected).toContain('unknown');
  });

  it.each([
    ['the file', { 'hyp.yaml': 'admin:\n  token: s3cret-under-a-wrong-key\n' }, []],
    ['--set', {}, ['admin.token=s3cret-under-a-wrong-key']],
    ['an unknown section', { 'hyp.yaml': 'secrets:\n  token: s3cret-under-a-wrong-key\n' }, []],
  ])(
    'an unknown key from %s: its value is described, never shown (it may be a mistyped secret)',
    (_from, files, sets) => {
      let message = '';
      try {
        loadConfig({ env: {}, cwd: dir(files), sets });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = [(err as ConfigError).message, ...(err as ConfigError).lines()].join('\n');
      }
      expect(message).toMatch(/not shown: an unknown key may be a mistyped secret/);
      expect(message).not.toContain('s3cret-under-a-wrong-key');
    },
  );

  it('refuses wrong types with the source', () => {
    const issues = issuesOf(() => loadConfig({ env: { HYP_SUPERVISOR_WORKERS: 'many' }, cwd: dir() }));
    expect(issues[0]).toMatchObject({
      path: 'supervisor.workers',
      value: 'many',
      source: 'env HYP_SUPERVISOR_WORKERS',
    });
  });

  it('names a source for a list item and for a key a section left out (nearest enclosing, else the section)', () => {
    const item = issuesOf(() =>
      loadConfig({ env: {}, cwd: dir(), sets: ['server.trusted_proxies=10.0.0.0/8,nonsense'] }),
    );
    expect(item[0]).toMatchObject({
      path: 'server.trusted_proxies.1',
      source: '--set server.trusted_proxies',
    });
    const missing = issuesOf(() => loadConfig({ env: { HYP_TCP_ECHO_TLS_ENABLED: 'false' }, cwd: dir() }));
    expect(missing[0]).toMatchObject({ path: 'tcp.echo.addr', source: 'env HYP_TCP_ECHO_TLS_ENABLED' });
    const file = issuesOf(() =>
      loadConfig({ env: {}, cwd: dir({ 'hyp.yaml': 'server:\n  trusted_proxies: [nonsense]\n' }) }),
    );
    expect(file[0]!.path).toBe('server.trusted_proxies.0');
    expect(file[0]!.source).toMatch(/hyp\.yaml/);
  });

  it('refuses bad durations', () => {
    const issues = issuesOf(() => loadConfig({ env: {}, cwd: dir(), sets: ['drain.delay=5 seconds'] }));
    expect(issues[0]).toMatchObject({ path: 'drain.delay', value: '5 seconds' });
    expect(issues[0]!.expected).toContain('duration');
  });

  it('refuses unusable addresses and port clashes', () => {
    expect(
      issuesOf(() => loadConfig({ env: { HYP_ADMIN_ADDR: 'localhost:99999' }, cwd: dir() }))[0],
    ).toMatchObject({
      path: 'admin.addr',
      value: 'localhost:99999',
    });
    const clash = issuesOf(() => loadConfig({ env: { HYP_ADMIN_ADDR: ':8080' }, cwd: dir() }));
    expect(clash[0]!.path).toBe('admin.addr');
    expect(clash[0]!.expected).toContain('server.addr');
  });

  it('refuses an unwritable PID directory', () => {
    const issues = issuesOf(() =>
      loadConfig({ env: { HYP_SUPERVISOR_PID_FILE: '/nonexistent-dir/hyp.pid' }, cwd: dir() }),
    );
    expect(issues[0]).toMatchObject({ path: 'supervisor.pid_file', value: '/nonexistent-dir/hyp.pid' });
    const ro = dir();
    mkdirSync(join(ro, 'ro'));
    chmodSync(join(ro, 'ro'), 0o500);
    // root ignores mode bits, so a file standing where the directory should be is the portable case
    writeFileSync(join(ro, 'file'), '');
    expect(
      issuesOf(() =>
        loadConfig({ env: { HYP_SUPERVISOR_PID_FILE: join(ro, 'file', 'hyp.pid') }, cwd: ro }),
      )[0]!.path,
    ).toBe('supervisor.pid_file');
  });

  it('refuses an HTTP/2 frame size outside 16 KiB..16 MiB and an AES key that is not 32 bytes', () => {
    expect(
      issuesOf(() => loadConfig({ env: {}, cwd: dir(), sets: ['server.http2.max_frame_size=1024'] }))[0]!
        .path,
    ).toBe('server.http2.max_frame_size');
    const d = dir({ 'k.bin': 'short' });
    const issues = issuesOf(() =>
      loadConfig({ env: {}, cwd: d, sets: ['websocket.security.aes_key_file=k.bin'] }),
    );
    expect(issues[0]!.expected).toContain('32 bytes');
  });

  it('refuses a replay window without key files: replay protection needs sealed frames', () => {
    const issues = issuesOf(() =>
      loadConfig({ env: {}, cwd: dir(), sets: ['websocket.security.replay_window=30s'] }),
    );
    expect(issues.map((i) => [i.path, i.value])).toEqual([['websocket.security.replay_window', '30s']]);
    expect(issues[0]!.expected).toContain('aes_key_file or hmac_key_file');
    const d = dir({ 'h.bin': 'a secret of some length' });
    const { config } = loadConfig({
      env: {},
      cwd: d,
      sets: ['websocket.security.replay_window=30s', 'websocket.security.hmac_key_file=h.bin'],
    });
    expect(config.websocket.security.replay_window).toBe('30s');
  });

  it('refuses a server.trusted_proxies entry that is not an address, CIDR or range name, by index', () => {
    const issues = issuesOf(() =>
      loadConfig({
        env: {},
        cwd: dir({
          'hyp.yaml': 'server:\n  trusted_proxies: [10.0.0.0/8, nonsense, 192.168.0.1/40, loopback]\n',
        }),
      }),
    );
    expect(issues.map((i) => [i.path, i.value])).toEqual([
      ['server.trusted_proxies.1', 'nonsense'],
      ['server.trusted_proxies.2', '192.168.0.1/40'],
    ]);
    expect(issues[0]!.expected).toContain('loopback, linklocal or uniquelocal');
  });

  it("ignores Kubernetes Service link variables (Services named hyp, hyp-tcp, hyp-admin in the pod's namespace)", () => {
    const port = (name: string, n: number) => ({ name, port: n, targetPort: n, protocol: 'TCP' });
    const env = serviceLinkEnv([
      { metadata: { name: 'hyp' }, spec: { ports: [port('http', 80), port('admin', 9090)] } },
      { metadata: { name: 'hyp-tcp' }, spec: { ports: [port('echo', 7000)] } },
      { metadata: { name: 'hyp-admin' }, spec: { ports: [port('metrics', 9090)] } },
    ]);
    expect(Object.keys(env).length).toBeGreaterThan(20);
    const { config, warnings } = loadConfig({ env: { ...env, HYP_DRAIN_DELAY: '3s' }, cwd: dir() });
    expect(warnings).toEqual([]);
    expect(config.tcp).toEqual({});
    expect(config.drain.delay).toBe('3s');
    // A misspelt key is still reported.
    expect(loadConfig({ env: { HYP_DRAIN_DELAYY: '3s' }, cwd: dir() }).warnings).toHaveLength(1);
  });

  it('reports every problem at once', () => {
    const issues = issuesOf(() =>
      loadConfig({ env: { HYP_DRAIN_DELAY: 'x', HYP_DRAIN_TIMEOUT: 'y' }, cwd: dir() }),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(['drain.delay', 'drain.timeout']);
  });

  it('refuses invalid YAML with the file named', () => {
    expect(() => loadConfig({ env: {}, cwd: dir({ 'hyp.yaml': 'server: [\n' }) })).toThrow(
      /hyp\.yaml is not valid YAML/,
    );
  });

  it('emits a JSON Schema that closes every object', () => {
    const schema = jsonSchema() as {
      additionalProperties: boolean;
      properties: Record<string, { additionalProperties?: boolean }>;
    };
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.server!.additionalProperties).toBe(false);
  });
});

describe('units', () => {
  it('parses durations, sizes and addresses', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('5')).toBeUndefined();
    expect(parseSize('64KiB')).toBe(65_536);
    expect(parseSize('1MB')).toBe(1_000_000);
    expect(parseSize('1 parsec')).toBeUndefined();
    expect(parseAddress(':8080')).toEqual({ host: undefined, port: 8080 });
    expect(parseAddress('[::1]:9')).toEqual({ host: '::1', port: 9 });
    expect(parseAddress('[nope]:9')).toBeUndefined();
    expect(parseAddress('a b:1')).toBeUndefined();
  });
});
