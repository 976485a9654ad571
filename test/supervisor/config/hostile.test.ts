/**
 * Hostile and odd config input: every case ends in a HypError naming the key
 * path and the source (or the file), never a crash, a hang, a polluted
 * Object.prototype or a silently accepted nonsense value.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../supervisor/config/load.js';
import { parseAddress, parseDuration, parseSize } from '../../../supervisor/config/units.js';
import { HypError } from '../../../supervisor/errors.js';

function dir(files: Record<string, string | Buffer> = {}): string {
  const d = mkdtempSync(join(tmpdir(), 'hyp-cfg-hostile-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

function issuesOf(fn: () => unknown) {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(ConfigError);
  return (err as ConfigError).issues;
}

function codeOf(fn: () => unknown): string {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(HypError);
  return (err as HypError).code;
}

const yaml = (text: string | Buffer) => ({ env: {}, cwd: dir({ 'hyp.yaml': text }) });

describe('prototype pollution', () => {
  afterEach(() => {
    for (const k of ['polluted', 'addr', 'x']) delete (Object.prototype as Record<string, unknown>)[k];
  });

  it('refuses __proto__ keys in the file, at the top, in a section, in tcp and in an unknown section', () => {
    for (const text of [
      '__proto__:\n  polluted: 1\n',
      '__proto__: 5\n',
      'server:\n  __proto__:\n    polluted: 1\n',
      'tcp:\n  __proto__:\n    addr: ":7000"\n',
      'tcp:\n  e:\n    addr: ":7001"\n    __proto__:\n      addr: ":7000"\n',
      'foo:\n  __proto__:\n    polluted: 1\n',
    ]) {
      const issues = issuesOf(() => loadConfig(yaml(text)));
      expect(issues.some((i) => i.path.endsWith('__proto__') && i.source.startsWith('file '))).toBe(true);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(({} as Record<string, unknown>).addr).toBeUndefined();
    }
  });

  it('refuses __proto__ and constructor paths in --set', () => {
    for (const set of [
      '__proto__=1',
      '__proto__.polluted=1',
      'server.__proto__=1',
      'tcp.__proto__.addr=:7000',
      'constructor.prototype.x=1',
    ]) {
      const issues = issuesOf(() => loadConfig({ env: {}, cwd: dir(), sets: [set] }));
      expect(issues[0]).toMatchObject({ path: set.slice(0, set.indexOf('=')), source: '--set' });
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(({} as Record<string, unknown>).addr).toBeUndefined();
      expect(({} as Record<string, unknown>).x).toBeUndefined();
    }
  });
});

describe('the config file itself', () => {
  it('refuses a FIFO without blocking on it', async () => {
    const d = dir();
    const fifo = join(d, 'hyp.yaml');
    const mk = spawn('mkfifo', [fifo]);
    await new Promise((r) => mk.on('exit', r));
    // A writer, so that a loader which does open the FIFO gets a (valid) file instead of hanging.
    const writer = spawn('sh', ['-c', `printf 'drain:\\n  delay: 1s\\n' > "${fifo}"`]);
    try {
      expect(codeOf(() => loadConfig({ env: {}, cwd: d }))).toBe('HYP_E_CONFIG_FILE');
      expect(thrown(() => loadConfig({ env: {}, cwd: d, file: fifo }))).toHaveProperty(
        'message',
        expect.stringContaining('FIFO'),
      );
    } finally {
      writer.kill();
    }
  });

  it('refuses a ./hyp.yaml that is a dangling or looping symlink instead of ignoring it', () => {
    const d = dir();
    symlinkSync(join(d, 'nowhere.yaml'), join(d, 'hyp.yaml'));
    expect(codeOf(() => loadConfig({ env: {}, cwd: d }))).toBe('HYP_E_CONFIG_FILE');
    const l = dir();
    symlinkSync(join(l, 'b'), join(l, 'a'));
    symlinkSync(join(l, 'a'), join(l, 'b'));
    expect(thrown(() => loadConfig({ env: {}, cwd: l, file: 'a' }))).toHaveProperty(
      'message',
      expect.stringContaining('symbolic link loop'),
    );
  });

  it('refuses a directory, an over-large file and an empty --config path', () => {
    const d = dir();
    mkdirSync(join(d, 'conf.d'));
    expect(codeOf(() => loadConfig({ env: {}, cwd: d, file: 'conf.d' }))).toBe('HYP_E_CONFIG_FILE');
    const big = `app: x\n# ${'x'.repeat(1024 * 1024)}\n`;
    expect(codeOf(() => loadConfig(yaml(big)))).toBe('HYP_E_CONFIG_FILE');
    expect(codeOf(() => loadConfig({ env: {}, cwd: dir({ 'hyp.yaml': 'drain: {}\n' }), file: '' }))).toBe(
      'HYP_E_CONFIG_FILE',
    );
  });

  it('refuses bytes that are not UTF-8 instead of reading them as U+FFFD', () => {
    const text = Buffer.concat([
      Buffer.from('supervisor:\n  pid_file: /tmp/'),
      Buffer.from([0xff]),
      Buffer.from('.pid\n'),
    ]);
    expect(codeOf(() => loadConfig(yaml(text)))).toBe('HYP_E_CONFIG_PARSE');
    // A UTF-8 BOM is fine.
    expect(loadConfig(yaml('\ufeffdrain:\n  delay: 1s\n')).config.drain.delay).toBe('1s');
  });

  it('refuses an alias of a mapping inside itself (a cycle) and absurd nesting with a parse error, not a stack overflow', () => {
    const err = thrown(() => loadConfig(yaml('x: &x\n  y: *x\n')));
    expect(err).toBeInstanceOf(HypError);
    expect((err as HypError).code).toBe('HYP_E_CONFIG_PARSE');
    expect((err as HypError).message).toContain('x.y');
    const deep = `foo: ${'{a: '.repeat(100)}1${'}'.repeat(100)}\n`;
    expect(codeOf(() => loadConfig(yaml(deep)))).toBe('HYP_E_CONFIG_PARSE');
  });

  it('refuses YAML tags beyond plain JSON values, naming the tag', () => {
    for (const [text, tag] of [
      ['drain:\n  delay: !!binary aGVsbG8=\n', '!!binary'],
      ['websocket:\n  codecs: !!set {json}\n', '!!set'],
      ['app: !!timestamp 2001-12-14\n', '!!timestamp'],
      ['drain:\n  delay: !foo 5s\n', '!foo'],
    ] as const) {
      const err = thrown(() => loadConfig(yaml(text)));
      expect(err).toBeInstanceOf(HypError);
      expect((err as HypError).code).toBe('HYP_E_CONFIG_PARSE');
      expect((err as HypError).message).toContain(tag);
    }
    // The core tags still work.
    expect(loadConfig(yaml('drain: !!map\n  delay: !!str 5s\n')).config.drain.delay).toBe('5s');
  });

  it('refuses keys that collide as strings and keys that are not scalars', () => {
    const dup = thrown(() => loadConfig(yaml('1: a\n"1": b\n')));
    expect((dup as HypError).code).toBe('HYP_E_CONFIG_PARSE');
    expect((dup as HypError).message).toMatch(/unique.*line 2/);
    expect(codeOf(() => loadConfig(yaml('? [a, b]\n: 1\n')))).toBe('HYP_E_CONFIG_PARSE');
    expect(codeOf(() => loadConfig(yaml('drain:\n  delay: 1s\n  delay: 2s\n')))).toBe('HYP_E_CONFIG_PARSE');
  });
});

describe('values of the wrong shape', () => {
  it('refuses a list where a section is expected instead of filling it with defaults', () => {
    expect(issuesOf(() => loadConfig(yaml('server: []\n')))[0]).toMatchObject({
      path: 'server',
      source: expect.stringContaining('file '),
    });
    expect(issuesOf(() => loadConfig(yaml('server: [1, 2]\n')))[0]!.path).toBe('server');
  });

  it('refuses tcp as a list with a config error, not a TypeError', () => {
    expect(issuesOf(() => loadConfig(yaml('tcp: [1]\n')))[0]!.path).toBe('tcp');
  });

  it('refuses a mapping where a list is expected instead of using the default list', () => {
    expect(issuesOf(() => loadConfig(yaml('websocket:\n  codecs: {a: 1}\n')))[0]!.path).toBe(
      'websocket.codecs',
    );
  });

  it('takes the plain numbers a size and a duration are documented with', () => {
    const { config } = loadConfig(yaml('server:\n  limits:\n    body_limit: 512\ndrain:\n  delay: 0\n'));
    expect(config.server.limits.body_limit).toBe('512');
    expect(config.drain.delay).toBe('0');
  });

  it('shows Infinity and NaN as written, not as null', () => {
    for (const [text, shown] of [
      ['supervisor:\n  workers: 1e309\n', 'got Infinity'],
      ['supervisor:\n  workers: .nan\n', 'got NaN'],
    ] as const) {
      const err = thrown(() => loadConfig(yaml(text))) as ConfigError;
      expect(err.lines()[0]).toContain(shown);
    }
  });

  it('refuses integers beyond 2^53, which are typos, not counts', () => {
    const issues = issuesOf(() =>
      loadConfig(yaml('server:\n  http2:\n    max_concurrent_streams: 99999999999999999999999\n')),
    );
    expect(issues[0]).toMatchObject({ path: 'server.http2.max_concurrent_streams' });
    expect(issues[0]!.source).toContain('file ');
  });

  it('says "a number", not "an number"', () => {
    const issues = issuesOf(() =>
      loadConfig({
        env: {},
        cwd: dir(),
        sets: ['tcp.e.addr=:7000', 'tcp.e.rate_limit.per_ip_per_second=-1'],
      }),
    );
    expect(issues[0]!.expected).toMatch(/^a number >= 0/);
  });
});

describe('units', () => {
  it("adds duration parts up in any order, as Go's time.ParseDuration does (README)", () => {
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('90s1m')).toBe(150_000);
    expect(parseDuration('5s5s')).toBe(10_000);
    expect(parseDuration('1h-5m')).toBeUndefined();
    expect(parseDuration('5 s')).toBeUndefined();
  });

  it('refuses durations a timer cannot hold and non-zero durations that round to 0', () => {
    expect(parseDuration('596h')).toBe(596 * 3_600_000);
    expect(parseDuration('597h')).toBeUndefined();
    expect(parseDuration('9999999999999h')).toBeUndefined();
    expect(parseDuration(`${'1'.repeat(400)}h`)).toBeUndefined();
    expect(parseDuration('0.4ms')).toBeUndefined();
    expect(parseDuration('0.0s')).toBe(0);
    expect(
      issuesOf(() => loadConfig({ env: {}, cwd: dir(), sets: ['drain.timeout=9999h'] }))[0],
    ).toMatchObject({
      path: 'drain.timeout',
      source: '--set drain.timeout',
    });
  });

  it('refuses sizes beyond 2^53 bytes', () => {
    expect(parseSize('9999999999GiB')).toBeUndefined();
    expect(parseSize('1'.repeat(400))).toBeUndefined();
    expect(parseSize('8191TB')).toBeUndefined();
    expect(parseSize('1GiB')).toBe(1024 ** 3);
  });

  it('refuses an unbracketed IPv6 host, where the port is a guess', () => {
    expect(parseAddress('fe80::1:80')).toBeUndefined();
    expect(parseAddress('::1:8080')).toBeUndefined();
    expect(parseAddress('[fe80::1]:80')).toEqual({ host: 'fe80::1', port: 80 });
  });
});

describe('environment and --set', () => {
  it('PORT does not paper over an unusable server.addr from the file', () => {
    for (const addr of ['bogus', '5']) {
      const issues = issuesOf(() =>
        loadConfig({ env: { PORT: '3000' }, cwd: dir({ 'hyp.yaml': `server:\n  addr: ${addr}\n` }) }),
      );
      expect(issues[0]).toMatchObject({ path: 'server.addr', source: expect.stringContaining('file ') });
    }
    const ok = loadConfig({
      env: { PORT: '3000' },
      cwd: dir({ 'hyp.yaml': 'server:\n  addr: 127.0.0.1:1\n' }),
    });
    expect(ok.config.server.addr).toBe('127.0.0.1:3000');
  });

  it('reads numbers from text as decimal only', () => {
    for (const text of ['0x10', '0b11', '0o7', '1e1', 'Infinity', '']) {
      expect(
        issuesOf(() => loadConfig({ env: { HYP_SUPERVISOR_WORKERS: text }, cwd: dir() }))[0],
      ).toMatchObject({ path: 'supervisor.workers', source: 'env HYP_SUPERVISOR_WORKERS' });
    }
    expect(loadConfig({ env: { HYP_SUPERVISOR_WORKERS: ' 2 ' }, cwd: dir() }).config.supervisor.workers).toBe(
      2,
    );
  });

  it('drops empty entries of a list given as text', () => {
    const env = { HYP_WEBSOCKET_ALLOWED_ORIGINS: 'https://a.example,, https://b.example, ' };
    expect(loadConfig({ env, cwd: dir() }).config.websocket.allowed_origins).toEqual([
      'https://a.example',
      'https://b.example',
    ]);
    const blank = { HYP_WEBSOCKET_ALLOWED_ORIGINS: ' ' };
    expect(loadConfig({ env: blank, cwd: dir() }).config.websocket.allowed_origins).toEqual([]);
  });
});

describe('unknown keys get a did-you-mean', () => {
  it('in the file, in --set and in HYP_* names', () => {
    expect(issuesOf(() => loadConfig(yaml('server:\n  adr: ":1"\n')))[0]!.expected).toContain(
      'did you mean server.addr?',
    );
    const section = issuesOf(() => loadConfig(yaml('sever:\n  addr: ":1"\n')))[0]!;
    expect(section.expected).toContain('did you mean server?');
    expect(section.source).toContain('file ');
    expect(
      issuesOf(() => loadConfig({ env: {}, cwd: dir(), sets: ['drain.dealy=1s'] }))[0]!.expected,
    ).toContain('did you mean drain.delay?');
    expect(
      issuesOf(() => loadConfig({ env: {}, cwd: dir(), sets: ['tcp.echo.adr=:7000'] }))[0]!.expected,
    ).toContain('did you mean tcp.echo.addr?');
    const { warnings } = loadConfig({ env: { HYP_SERVR_ADDR: ':1' }, cwd: dir() });
    expect(warnings.join()).toContain('did you mean HYP_SERVER_ADDR?');
    expect(issuesOf(() => loadConfig(yaml('drain:\n  <<: {delay: 1s}\n')))[0]!.expected).toContain(
      'merge keys',
    );
  });
});

describe('error output stays readable', () => {
  it('clips huge values and keys and caps the number of lines', () => {
    const err = thrown(() =>
      loadConfig({
        env: {},
        cwd: dir(),
        sets: [`drain.delay=${'x'.repeat(100_000)}`, `${'k'.repeat(100_000)}=1`],
      }),
    ) as ConfigError;
    for (const line of err.lines()) expect(line.length).toBeLessThan(1000);
    const many = Array.from({ length: 300 }, (_, i) => `  k${i}: 1\n`).join('');
    const lines = (thrown(() => loadConfig(yaml(`server:\n${many}`))) as ConfigError).lines();
    expect(lines.length).toBeLessThanOrEqual(51);
    expect(lines.at(-1)).toContain('more problems');
  });
});
