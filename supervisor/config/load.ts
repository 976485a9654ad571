/**
 * Config loading: defaults < file < HYP_* env (and PORT) < --set key=value.
 *
 * Everything is checked here, before the supervisor binds a socket or forks a
 * worker: schema (types, closed objects, units), addresses, listener
 * clashes, the PID file directory. Every problem is reported at once, each
 * naming the key path, the value, where it came from and what was expected.
 */
import {
  accessSync,
  constants,
  existsSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { HypError } from '../errors.js';
import { type Config, ConfigSchema, reservedListenerNames, schemaAt, TcpServiceSchema } from './schema.js';
import { formatAddress, parseAddress, parseDuration, parseSize } from './units.js';

FormatRegistry.Set('duration', (v) => parseDuration(v) !== undefined);
FormatRegistry.Set('size', (v) => parseSize(v) !== undefined);
FormatRegistry.Set('address', (v) => v === '' || parseAddress(v) !== undefined);

export interface ConfigIssue {
  path: string;
  value: unknown;
  expected: string;
  source: string;
}

export class ConfigError extends HypError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    const first = issues[0]!;
    super('HYP_E_CONFIG_INVALID', { path: first.path, detail: describeIssue(first) });
    this.issues = issues;
  }
  /** One line per issue, for the CLI. */
  lines(): string[] {
    return this.issues.map((i) => `HYP_E_CONFIG_INVALID: ${i.path}: ${describeIssue(i)}`);
  }
}

function describeIssue(i: ConfigIssue): string {
  return `got ${JSON.stringify(i.value)}${i.source ? ` (from ${i.source})` : ''}, expected ${i.expected}`;
}

export interface LoadOptions {
  /** Config file; `undefined` looks for ./hyp.yaml (absent is fine). */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** `key.path=value` pairs from `--set`. */
  sets?: readonly string[];
  cwd?: string;
}

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file that was read, if any. */
  file: string | undefined;
  /** Things worth a log line that are not errors (e.g. unknown HYP_* variables). */
  warnings: string[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const envPrefix = 'HYP_';
/** HYP_* variables that are not config keys. */
const envNotConfig = new Set(['HYP_CONFIG', 'HYP_ROLE', 'HYP_WORKER_ID', 'HYP_GENERATION', 'HYP_APP']);

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const warnings: string[] = [];
  const sources = new Map<string, string>();
  const raw: JsonObject = {};

  const file = resolveConfigFile(opts.file ?? env.HYP_CONFIG, cwd);
  if (file) {
    const data = readConfigFile(file);
    mergeInto(raw, data, [], sources, `file ${file}`);
  }

  const issues: ConfigIssue[] = [];
  applyEnv(raw, env, sources, issues, warnings);
  for (const arg of opts.sets ?? []) applySet(raw, arg, sources, issues);
  if (issues.length) throw new ConfigError(issues);

  const filled = Value.Default(ConfigSchema, raw) as JsonObject;
  // Record entries do not get their defaults from Value.Default.
  const tcp = (filled.tcp ?? {}) as JsonObject;
  for (const name of Object.keys(tcp)) tcp[name] = Value.Default(TcpServiceSchema, tcp[name] ?? {}) as Json;

  for (const err of Value.Errors(ConfigSchema, filled)) {
    const path = pointerToPath(err.path);
    issues.push({
      path,
      value: err.value,
      expected: expectedFor(err.schema, err.message),
      source: sources.get(path) ?? '',
    });
  }
  if (issues.length) throw new ConfigError(issues);

  const config = filled as unknown as Config;
  if (file && !config.app) config.app = '';
  semanticChecks(config, sources, issues, cwd);
  if (issues.length) throw new ConfigError(issues);
  return { config, file, warnings };
}

function resolveConfigFile(given: string | undefined, cwd: string): string | undefined {
  if (given) {
    const path = resolve(cwd, given);
    if (!existsSync(path)) throw new HypError('HYP_E_CONFIG_FILE', { file: path, detail: 'no such file' });
    return path;
  }
  const fallback = resolve(cwd, 'hyp.yaml');
  return existsSync(fallback) ? fallback : undefined;
}

function readConfigFile(file: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new HypError('HYP_E_CONFIG_FILE', { file, detail: (err as Error).message });
  }
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new HypError('HYP_E_CONFIG_PARSE', { file, detail: (err as Error).message.split('\n')[0] });
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError([
      { path: '(root)', value: data, expected: 'a mapping of config sections', source: `file ${file}` },
    ]);
  }
  return data as JsonObject;
}

function mergeInto(
  target: JsonObject,
  data: JsonObject,
  at: string[],
  sources: Map<string, string>,
  source: string,
) {
  for (const [key, value] of Object.entries(data)) {
    const path = [...at, key];
    const existing = target[key];
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      if (!existing || typeof existing !== 'object' || Array.isArray(existing)) target[key] = {};
      mergeInto(target[key] as JsonObject, value, path, sources, source);
    } else {
      target[key] = value;
      sources.set(path.join('.'), source);
    }
  }
}

function setPath(target: JsonObject, path: readonly string[], value: Json) {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (!next || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as JsonObject;
  }
  node[path[path.length - 1]!] = value;
}

function getPath(target: JsonObject, path: readonly string[]): Json | undefined {
  let node: Json | undefined = target;
  for (const key of path) {
    if (!node || typeof node !== 'object' || Array.isArray(node)) return undefined;
    node = node[key];
  }
  return node;
}

/** Every leaf key path of the schema with its env name; `*` marks a record key. */
export function leafPaths(schema: TSchema = ConfigSchema, at: string[] = []): string[][] {
  if (schema.type === 'object' && schema.properties) {
    return Object.entries(schema.properties as Record<string, TSchema>).flatMap(([k, s]) =>
      leafPaths(s, [...at, k]),
    );
  }
  if (schema.type === 'object' && schema.patternProperties) {
    const inner = Object.values(schema.patternProperties as Record<string, TSchema>)[0]!;
    return leafPaths(inner, [...at, '*']);
  }
  return [at];
}

export function envName(path: readonly string[]): string {
  return envPrefix + path.join('_').replace(/-/g, '_').toUpperCase();
}

function applyEnv(
  raw: JsonObject,
  env: NodeJS.ProcessEnv,
  sources: Map<string, string>,
  issues: ConfigIssue[],
  warnings: string[],
) {
  const leaves = leafPaths();
  const exact = new Map(leaves.filter((p) => !p.includes('*')).map((p) => [envName(p), p]));
  const recordLeaves = leaves.filter((p) => p.includes('*'));

  if (env.PORT !== undefined && env.PORT !== '') {
    const port = env.PORT;
    if (!/^\d+$/.test(port) || Number(port) > 65_535) {
      issues.push({
        path: 'server.addr',
        value: port,
        expected: 'PORT to be a TCP port 0..65535',
        source: 'env PORT',
      });
    } else {
      const current = getPath(raw, ['server', 'addr']);
      const base = parseAddress(typeof current === 'string' && current ? current : ':8080');
      setPath(raw, ['server', 'addr'], formatAddress({ host: base?.host, port: Number(port) }));
      sources.set('server.addr', 'env PORT');
    }
  }

  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith(envPrefix) || text === undefined || envNotConfig.has(name)) continue;
    let path = exact.get(name);
    if (!path) path = matchRecordEnv(name, recordLeaves, raw);
    if (!path) {
      warnings.push(`environment variable ${name} is not a hyp config key; ignored`);
      continue;
    }
    assignText(raw, path, text, `env ${name}`, sources, issues);
  }
}

/** `HYP_TCP_ECHO_IDLE_TIMEOUT` → `tcp.echo.idle_timeout` (service names may hold `_` as `-`). */
function matchRecordEnv(name: string, recordLeaves: string[][], raw: JsonObject): string[] | undefined {
  for (const leaf of recordLeaves) {
    const star = leaf.indexOf('*');
    const head = envName(leaf.slice(0, star));
    const tail = `_${leaf
      .slice(star + 1)
      .join('_')
      .toUpperCase()}`;
    if (!name.startsWith(`${head}_`) || !name.endsWith(tail)) continue;
    const middle = name.slice(head.length + 1, name.length - tail.length);
    if (!middle) continue;
    const lower = middle.toLowerCase();
    const record = getPath(raw, leaf.slice(0, star));
    const known = record && typeof record === 'object' && !Array.isArray(record) ? Object.keys(record) : [];
    const key = known.find((k) => k.replace(/-/g, '_') === lower) ?? lower.replace(/_/g, '-');
    return [...leaf.slice(0, star), key, ...leaf.slice(star + 1)];
  }
  return undefined;
}

function applySet(raw: JsonObject, arg: string, sources: Map<string, string>, issues: ConfigIssue[]) {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new HypError('HYP_E_CONFIG_SET', { arg: JSON.stringify(arg) });
  const path = arg.slice(0, eq).split('.');
  const text = arg.slice(eq + 1);
  if (!schemaAt(path)) {
    issues.push({
      path: path.join('.'),
      value: text,
      expected: 'a known config key (see `hyp schema`)',
      source: '--set',
    });
    return;
  }
  assignText(raw, path, text, `--set ${arg.slice(0, eq)}`, sources, issues);
}

/** Convert env / --set text by the schema type found at `path`. */
function assignText(
  raw: JsonObject,
  path: string[],
  text: string,
  source: string,
  sources: Map<string, string>,
  issues: ConfigIssue[],
) {
  const schema = schemaAt(path);
  const key = path.join('.');
  let value: Json = text;
  const type = schema?.type ?? (schema?.anyOf ? 'string' : undefined);
  if (type === 'boolean') {
    if (/^(true|1|yes|on)$/i.test(text)) value = true;
    else if (/^(false|0|no|off)$/i.test(text)) value = false;
    else return void issues.push({ path: key, value: text, expected: 'a boolean (true or false)', source });
  } else if (type === 'integer' || type === 'number') {
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n)) {
      return void issues.push({ path: key, value: text, expected: `a ${type}`, source });
    }
    value = n;
  } else if (type === 'array') {
    value = text === '' ? [] : text.split(',').map((s) => s.trim());
  } else if (type === 'object') {
    return void issues.push({
      path: key,
      value: text,
      expected: 'a section; set its keys one by one',
      source,
    });
  }
  setPath(raw, path, value);
  sources.set(key, source);
}

function pointerToPath(pointer: string): string {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  return parts.length ? parts.join('.') : '(root)';
}

const formatExpectations: Record<string, string> = {
  duration: 'a duration such as 250ms, 5s or 1m30s',
  size: 'a size such as 512, 64KiB or 1MiB',
  address: 'a listen address such as :8080, 127.0.0.1:8080 or [::]:8080 (port 0..65535)',
};

function expectedFor(schema: TSchema, message: string): string {
  if (message.startsWith('Unexpected property'))
    return 'no such key (unknown keys are refused; see `hyp schema`)';
  if (schema.anyOf) {
    const literals = (schema.anyOf as TSchema[]).map((s) => s.const).filter((c) => c !== undefined);
    if (literals.length) return `one of ${literals.map((l) => JSON.stringify(l)).join(', ')}`;
  }
  const bounds = [
    schema.minimum !== undefined ? `>= ${schema.minimum}` : '',
    schema.maximum !== undefined ? `<= ${schema.maximum}` : '',
  ].filter(Boolean);
  const what = schema.description ?? schema.type ?? 'a valid value';
  const format = schema.format as string | undefined;
  if (format && formatExpectations[format]) return `${formatExpectations[format]} (${what})`;
  if (schema.type === 'integer' || schema.type === 'number') {
    return `an ${schema.type}${bounds.length ? ` ${bounds.join(' and ')}` : ''} (${what})`;
  }
  if (schema.type === 'boolean') return 'a boolean (true or false)';
  if (schema.type === 'array') return `a list (${what})`;
  if (schema.type === 'object') return `a mapping (${what})`;
  return String(what);
}

function semanticChecks(config: Config, sources: Map<string, string>, issues: ConfigIssue[], cwd: string) {
  const push = (path: string, value: unknown, expected: string) =>
    issues.push({ path, value, expected, source: sources.get(path) ?? '' });

  const taken = new Map<string, string>();
  const claim = (path: string, addr: string) => {
    const parsed = parseAddress(addr);
    if (!parsed) return;
    if (parsed.port === 0) return; // ephemeral ports never clash
    const key = String(parsed.port);
    const other = taken.get(key);
    if (other) push(path, addr, `a port not already used by ${other}`);
    else taken.set(key, path);
  };
  claim('server.addr', config.server.addr);
  claim('admin.addr', config.admin.addr);
  if (!config.server.addr) push('server.addr', config.server.addr, 'a listen address such as :8080');
  if (!config.admin.addr) push('admin.addr', config.admin.addr, 'a listen address such as :9090');

  for (const [name, svc] of Object.entries(config.tcp)) {
    if (!/^[a-z][a-z0-9-]*$/.test(name) || reservedListenerNames.has(name)) {
      push(`tcp.${name}`, name, 'a service name of lower-case letters, digits and -, not http, h3 or admin');
      continue;
    }
    if (!svc.addr) push(`tcp.${name}.addr`, svc.addr, 'a listen address such as :7000');
    else claim(`tcp.${name}.addr`, svc.addr);
  }

  for (const [path, tls] of [
    ['server.tls', config.server.tls],
    ...Object.entries(config.tcp).map(([n, s]) => [`tcp.${n}.tls`, s.tls] as const),
  ] as const) {
    if (!tls.enabled) continue;
    if (!tls.cert_file) push(`${path}.cert_file`, tls.cert_file, 'a certificate file when TLS is enabled');
    if (!tls.key_file) push(`${path}.key_file`, tls.key_file, 'a key file when TLS is enabled');
    if (tls.client_auth !== 'none' && !tls.ca_file) {
      push(`${path}.ca_file`, tls.ca_file, `a CA file when client_auth is ${tls.client_auth}`);
    }
  }

  const aes = config.websocket.security.aes_key_file;
  if (aes) {
    const size = fileSize(resolve(cwd, aes));
    if (size === undefined)
      push('websocket.security.aes_key_file', aes, 'a readable file holding the raw AES key');
    else if (size !== 32)
      push('websocket.security.aes_key_file', aes, `a file of exactly 32 bytes (AES-256), it has ${size}`);
  }
  const hmac = config.websocket.security.hmac_key_file;
  if (hmac && fileSize(resolve(cwd, hmac)) === undefined) {
    push('websocket.security.hmac_key_file', hmac, 'a readable file holding the raw HMAC key');
  }
  if (config.admin.token_file && fileSize(resolve(cwd, config.admin.token_file)) === undefined) {
    push('admin.token_file', config.admin.token_file, 'a readable file holding the admin bearer token');
  }

  const ms = (p: string) => parseDuration(p) ?? 0;
  if (ms(config.supervisor.heartbeat_timeout) <= ms(config.supervisor.heartbeat_interval)) {
    push(
      'supervisor.heartbeat_timeout',
      config.supervisor.heartbeat_timeout,
      'a duration longer than heartbeat_interval',
    );
  }

  if (config.supervisor.pid_file) {
    const dir = dirname(resolve(cwd, config.supervisor.pid_file));
    try {
      if (!statSync(dir).isDirectory()) throw new Error('not a directory');
      // A real write, not access(2): root passes access() on read-only mounts.
      const probe = join(dir, `.hyp-probe-${process.pid}`);
      writeFileSync(probe, '', { flag: 'wx' });
      unlinkSync(probe);
    } catch (err) {
      push(
        'supervisor.pid_file',
        config.supervisor.pid_file,
        `a path in a writable directory (${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
  }
}

function fileSize(path: string): number | undefined {
  try {
    const st = statSync(path);
    accessSync(path, constants.R_OK);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The JSON Schema for editors (`hyp schema`). Every key has a default, so
 * nothing is required in a file.
 */
export function jsonSchema(): object {
  return JSON.parse(
    JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', ...ConfigSchema }),
    (key, value) => (key === 'required' && Array.isArray(value) ? undefined : value),
  );
}
