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
  lstatSync,
  readFileSync,
  type Stats,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import proxyaddr from 'proxy-addr';
import { isMap, isScalar, LineCounter, parseDocument, visit, type Node as YamlNode } from 'yaml';
import { HypError } from '../errors.js';
import { type Config, ConfigSchema, reservedListenerNames, schemaAt, TcpServiceSchema } from './schema.js';
import { formatAddress, maxDurationMs, parseAddress, parseDuration, parseSize } from './units.js';

FormatRegistry.Set('duration', (v) => parseDuration(v) !== undefined);
FormatRegistry.Set('size', (v) => parseSize(v) !== undefined);
FormatRegistry.Set('address', (v) => v === '' || parseAddress(v) !== undefined);

export interface ConfigIssue {
  path: string;
  value: unknown;
  expected: string;
  source: string;
  /**
   * The key is unknown: its value is described, not shown. It may be a
   * secret under a mistyped key (`admin.token` for `admin.token_file`),
   * and the message goes to logs.
   */
  unknownKey?: true;
}

export class ConfigError extends HypError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    const first = issues[0]!;
    super('HYP_E_CONFIG_INVALID', { path: first.path, detail: describeIssue(first) });
    this.issues = issues;
  }
  /** One line per issue, for the CLI (at most `maxIssueLines`, then a count of the rest). */
  lines(): string[] {
    const lines = this.issues
      .slice(0, maxIssueLines)
      .map((i) => `HYP_E_CONFIG_INVALID: ${clip(i.path)}: ${describeIssue(i)}`);
    if (this.issues.length > maxIssueLines) {
      lines.push(`HYP_E_CONFIG_INVALID: ... and ${this.issues.length - maxIssueLines} more problems`);
    }
    return lines;
  }
}

const maxIssueLines = 50;
/** Validation stops collecting problems after this many. */
const maxIssues = 1000;

/** Keep one error line readable whatever the input (a 5 MB string, a 100k-character key). */
function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}... (${text.length} characters)` : text;
}

function showValue(value: unknown): string {
  // JSON.stringify turns Infinity and NaN into null, which is not what was written.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return clip(JSON.stringify(value) ?? String(value));
}

/** What an unknown key was given, without the value itself. */
function describeHidden(value: unknown): string {
  const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;
  const what =
    typeof value === 'string'
      ? `a string of ${count(value.length, 'character')}`
      : Array.isArray(value)
        ? `a list of ${count(value.length, 'item')}`
        : value !== null && typeof value === 'object'
          ? `a section of ${count(Object.keys(value).length, 'key')}`
          : `a ${value === null ? 'null' : typeof value}`;
  return `${what} (not shown: an unknown key may be a mistyped secret)`;
}

function describeIssue(i: ConfigIssue): string {
  const got = i.unknownKey ? describeHidden(i.value) : showValue(i.value);
  return `got ${got}${i.source ? ` (from ${clip(i.source)})` : ''}, expected ${i.expected}`;
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

  const issues: ConfigIssue[] = [];
  const file = resolveConfigFile(opts.file ?? env.HYP_CONFIG, cwd, opts.file !== undefined);
  if (file) {
    const data = readConfigFile(file);
    const source = `file ${file}`;
    checkFileShape(data, ConfigSchema, [], source, issues);
    mergeInto(raw, data, [], sources, source, issues);
  }

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
      expected: expectedFor(err.schema, err.message, path),
      source: sourceOf(sources, path),
      ...(isUnknownKey(err.message) && { unknownKey: true }),
    });
    if (issues.length >= maxIssues) break;
  }
  if (!issues.length) checkSafeIntegers(ConfigSchema, filled, [], sources, issues);
  if (issues.length) throw new ConfigError(issues);

  const config = filled as unknown as Config;
  if (file && !config.app) config.app = '';
  semanticChecks(config, sources, issues, cwd);
  if (issues.length) throw new ConfigError(issues);
  return { config, file, warnings };
}

function resolveConfigFile(given: string | undefined, cwd: string, explicit: boolean): string | undefined {
  if (given === '' && explicit) throw new HypError('HYP_E_CONFIG_FILE', { file: '""', detail: 'empty path' });
  if (given) return resolve(cwd, given);
  const fallback = resolve(cwd, 'hyp.yaml');
  // lstat: a ./hyp.yaml that is a dangling symlink is an error, not "no config file".
  try {
    lstatSync(fallback);
    return fallback;
  } catch {
    return undefined;
  }
}

/** Larger is no configuration file; the YAML parser's cost grows with it. */
const maxConfigFileBytes = 1024 * 1024;
/** Deeper than any config key path: beyond it a file is refused (and an alias cycle is caught). */
const maxNesting = 64;
/** YAML tags a config file may use: the JSON-compatible core schema. */
const allowedTags = new Set(
  ['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((t) => `tag:yaml.org,2002:${t}`),
);

function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function readConfigFile(file: string): JsonObject {
  const fileError = (detail: string) => new HypError('HYP_E_CONFIG_FILE', { file, detail });
  const parseError = (detail: string) => new HypError('HYP_E_CONFIG_PARSE', { file, detail });
  let bytes: Buffer;
  try {
    const st = statSync(file);
    // A FIFO would block the read forever; a directory or device is no config file either.
    if (!st.isFile()) throw fileError(`it is ${fileKind(st)}, not a regular file`);
    if (st.size > maxConfigFileBytes) {
      throw fileError(`it is ${st.size} bytes; a config file may be at most ${maxConfigFileBytes} bytes`);
    }
    bytes = readFileSync(file);
  } catch (err) {
    if (err instanceof HypError) throw err;
    const e = err as NodeJS.ErrnoException;
    const detail =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'ELOOP'
          ? 'symbolic link loop'
          : e.code === 'EACCES'
            ? 'permission denied'
            : e.message;
    throw fileError(detail);
  }
  if (bytes.length > maxConfigFileBytes) {
    throw fileError(`it is over ${maxConfigFileBytes} bytes; a config file may be at most that`);
  }
  let text: string;
  try {
    // fatal: a Latin-1 file would otherwise become U+FFFD in paths and names, silently.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw parseError('the file is not UTF-8 text');
  }

  let data: unknown;
  try {
    const lineCounter = new LineCounter();
    // uniqueKeys is checked below in linear time (the parser's own check is quadratic).
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: false, lineCounter });
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem) throw parseError(problem.message.split('\n')[0]!.replace(/:$/, ''));
    const at = (node: { range?: readonly number[] | null | undefined }) => {
      const pos = lineCounter.linePos(node.range?.[0] ?? 0);
      return `at line ${pos.line}, column ${pos.col}`;
    };
    visit(doc, {
      Node(_, node) {
        const tag = (node as YamlNode).tag;
        if (tag && !allowedTags.has(tag)) {
          throw parseError(`the tag ${tag.replace('tag:yaml.org,2002:', '!!')} is not supported ${at(node)}`);
        }
        if (!isMap(node)) return;
        const seen = new Set<string>();
        for (const pair of node.items) {
          const key = pair.key;
          if (!isScalar(key) || (key.value !== null && typeof key.value === 'object')) {
            throw parseError(`map keys must be plain scalars ${at(key as YamlNode)}`);
          }
          const name = String(key.value);
          if (seen.has(name))
            throw parseError(`map keys must be unique: ${clip(JSON.stringify(name))} ${at(key)}`);
          seen.add(name);
        }
      },
    });
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    if (err instanceof HypError) throw err;
    const message = (err as Error).message.split('\n')[0]!;
    throw parseError(err instanceof RangeError ? `nested too deeply (${message})` : message);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError([
      { path: '(root)', value: data, expected: 'a mapping of config sections', source: `file ${file}` },
    ]);
  }
  const cycle = findCycle(data, [], new Set(), new Set());
  if (cycle) throw parseError(cycle);
  return data as JsonObject;
}

/**
 * An alias to a mapping that holds it (`x: &x {y: *x}`) makes a cyclic value
 * no config can be. Shared (aliased) values are walked once.
 */
function findCycle(
  value: unknown,
  path: string[],
  ancestors: Set<unknown>,
  done: Set<unknown>,
): string | undefined {
  if (!value || typeof value !== 'object' || done.has(value)) return undefined;
  const where = () => clip(path.join('.') || '(root)');
  if (ancestors.has(value)) return `${where()} is an alias of a mapping or list that contains it`;
  if (ancestors.size > maxNesting) return `${where()} is nested deeper than ${maxNesting} levels`;
  ancestors.add(value);
  for (const k of Object.keys(value)) {
    path.push(k);
    const found = findCycle((value as Record<string, unknown>)[k], path, ancestors, done);
    if (found) return found;
    path.pop();
  }
  ancestors.delete(value);
  done.add(value);
  return undefined;
}

/**
 * What the schema types cannot say about a file's values, checked before
 * TypeBox fills defaults (which would turn `server: []` into a section of
 * defaults and `websocket.codecs: {a: 1}` into the default codecs, silently).
 * A bad value is reported and removed, so the remaining checks still run.
 */
function checkFileShape(
  data: JsonObject,
  schema: TSchema,
  at: string[],
  source: string,
  issues: ConfigIssue[],
) {
  for (const key of Object.keys(data)) {
    const path = [...at, key];
    const child = childSchema(schema, key);
    const value = data[key];
    if (!child || value === null || value === undefined) continue;
    const isSection = child.type === 'object';
    if (isSection && Array.isArray(value)) {
      issues.push({
        path: path.join('.'),
        value,
        expected: 'a mapping (a section of keys), not a list',
        source,
      });
      delete data[key];
    } else if (isSection && typeof value === 'object') {
      checkFileShape(value as JsonObject, child, path, source, issues);
    } else if (child.type === 'array' && typeof value === 'object' && !Array.isArray(value)) {
      issues.push({
        path: path.join('.'),
        value,
        expected: `a list (${child.description ?? 'values'})`,
        source,
      });
      delete data[key];
    } else if (typeof value === 'number' && (child.format === 'size' || child.format === 'duration')) {
      // `body_limit: 512` and `delay: 0` are the documented plain forms; YAML reads them as numbers.
      const text = String(value);
      if ((child.format === 'size' ? parseSize(text) : parseDuration(text)) !== undefined) data[key] = text;
    }
  }
}

function childSchema(schema: TSchema, key: string): TSchema | undefined {
  if (schema.type !== 'object') return undefined;
  if (schema.properties) return Object.hasOwn(schema.properties, key) ? schema.properties[key] : undefined;
  if (schema.patternProperties) return Object.values(schema.patternProperties as Record<string, TSchema>)[0];
  return undefined;
}

/** TypeBox's integer check passes 1e23; a count or port beyond 2^53 is a typo, not a value. */
function checkSafeIntegers(
  schema: TSchema,
  value: unknown,
  at: string[],
  sources: Map<string, string>,
  issues: ConfigIssue[],
) {
  if (schema.type === 'integer' && typeof value === 'number' && !Number.isSafeInteger(value)) {
    const path = at.join('.');
    issues.push({
      path,
      value,
      expected: `an integer ${[
        schema.minimum !== undefined ? `>= ${schema.minimum}` : '',
        `<= ${schema.maximum ?? Number.MAX_SAFE_INTEGER}`,
      ]
        .filter(Boolean)
        .join(' and ')} (${schema.description ?? 'integer'})`,
      source: sourceOf(sources, path),
    });
    return;
  }
  if (schema.type !== 'object' || !value || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value)) {
    const child = childSchema(schema, key);
    if (child) checkSafeIntegers(child, v, [...at, key], sources, issues);
  }
}

/** `__proto__` as a key would reach Object.prototype through plain-object assignment. */
function unsafeKey(key: string): boolean {
  return key === '__proto__';
}

function mergeInto(
  target: JsonObject,
  data: JsonObject,
  at: string[],
  sources: Map<string, string>,
  source: string,
  issues: ConfigIssue[],
) {
  for (const [key, value] of Object.entries(data)) {
    const path = [...at, key];
    if (unsafeKey(key)) {
      issues.push({
        path: path.join('.'),
        value,
        expected: unknownKeyExpectation(path),
        source,
        unknownKey: true,
      });
      continue;
    }
    const existing = Object.hasOwn(target, key) ? target[key] : undefined;
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      if (!existing || typeof existing !== 'object' || Array.isArray(existing)) target[key] = {};
      mergeInto(target[key] as JsonObject, value, path, sources, source, issues);
    } else {
      target[key] = value;
      sources.set(path.join('.'), source);
    }
  }
}

function setPath(target: JsonObject, path: readonly string[], value: Json) {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = Object.hasOwn(node, key) ? node[key] : undefined;
    if (!next || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as JsonObject;
  }
  node[path[path.length - 1]!] = value;
}

function getPath(target: JsonObject, path: readonly string[]): Json | undefined {
  let node: Json | undefined = target;
  for (const key of path) {
    if (!node || typeof node !== 'object' || Array.isArray(node) || !Object.hasOwn(node, key))
      return undefined;
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
      const base = current === undefined || current === '' ? parseAddress(':8080') : undefined;
      const parsed = typeof current === 'string' ? parseAddress(current) : undefined;
      // An unusable server.addr from the file stays, to be reported, instead of being replaced by PORT.
      if (base || parsed) {
        setPath(raw, ['server', 'addr'], formatAddress({ host: (parsed ?? base)?.host, port: Number(port) }));
        sources.set('server.addr', 'env PORT');
      }
    }
  }

  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith(envPrefix) || text === undefined || envNotConfig.has(name)) continue;
    if (!exact.has(name) && kubernetesServiceLink.test(name)) continue;
    let path = exact.get(name);
    if (!path) path = matchRecordEnv(name, recordLeaves, raw);
    if (!path) {
      const near = closest(name, [...exact.keys()]);
      warnings.push(
        `environment variable ${name} is not a hyp config key; ignored${near ? ` (did you mean ${near}?)` : ''}`,
      );
      continue;
    }
    assignText(raw, path, text, `env ${name}`, sources, issues);
  }
}

/**
 * The variables the kubelet gives every container for each Service of its
 * namespace (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_80_TCP_ADDR`, ...), unless
 * the pod turns Service links off: a Service named `hyp` or `hyp-tcp` would
 * otherwise be read as hyp config (`HYP_TCP_PORT_80_TCP_ADDR` as the address
 * of a TCP service, an exit 2 of every pod in the namespace). No config key
 * ends like these.
 */
const kubernetesServiceLink =
  /^HYP(?:_[A-Z0-9_]+)?_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$/;

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
  if (!schemaAt(path) || path.some(unsafeKey)) {
    // `tcp.*.addr` is offered as `tcp.<the name given>.addr`.
    const candidates = leafPaths().map((p) => p.map((k, i) => (k === '*' ? (path[i] ?? k) : k)).join('.'));
    const near = closest(path.join('.'), candidates);
    issues.push({
      path: path.join('.'),
      value: text,
      expected: `a known config key${near ? ` (did you mean ${near}?)` : ''}; unknown keys are refused (see \`hyp schema\`)`,
      source: '--set',
      unknownKey: true,
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
    // Decimal only: Number() would also take 0x10, 0b11 and 1e1 for a worker count.
    const n = Number(text);
    if (!/^\s*[+-]?\d+(\.\d+)?\s*$/.test(text) || !Number.isFinite(n)) {
      return void issues.push({
        path: key,
        value: text,
        expected: type === 'integer' ? 'an integer (decimal digits)' : 'a decimal number',
        source,
      });
    }
    value = n;
  } else if (type === 'array') {
    // `a,b,` and `a, ,b` hold no empty entry.
    value = text
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
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

/** The source of a section (e.g. an unknown one) is where its keys came from. */
function sourceWithin(sources: Map<string, string>, path: string): string {
  for (const [key, source] of sources) if (key.startsWith(`${path}.`)) return source;
  return '';
}

/**
 * Where the value at `path` came from: its own source, else the nearest
 * enclosing key's (an item of a list set as a whole: `server.trusted_proxies.0`),
 * else the source of something set within its section (a `tcp.echo` whose
 * only key came from an env variable, checked for its missing `addr`).
 */
function sourceOf(sources: Map<string, string>, path: string): string {
  const own = sources.get(path);
  if (own !== undefined) return own;
  const parts = path.split('.');
  for (let n = parts.length - 1; n > 0; n--) {
    const enclosing = sources.get(parts.slice(0, n).join('.'));
    if (enclosing !== undefined) return enclosing;
  }
  const within = sourceWithin(sources, path);
  if (within !== '' || parts.length < 2) return within;
  return sourceWithin(sources, parts.slice(0, -1).join('.'));
}

function pointerToPath(pointer: string): string {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  return parts.length ? parts.join('.') : '(root)';
}

const formatExpectations: Record<string, string> = {
  duration: `a duration such as 250ms, 5s or 1m30s, at least 1ms unless 0, at most ${Math.floor(maxDurationMs / 3_600_000)}h`,
  size: `a size such as 512, 64KiB or 1MiB, at most ${Number.MAX_SAFE_INTEGER} bytes`,
  address: 'a listen address such as :8080, 127.0.0.1:8080 or [::]:8080 (port 0..65535)',
};

/** The nearest of `candidates` to a misspelt `word`, if one is near enough to be what was meant. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  if (word.length > 100) return undefined;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  const lower = word.toLowerCase();
  for (const c of candidates) {
    if (Math.abs(c.length - word.length) > bestDistance) continue;
    const d = editDistance(lower, c.toLowerCase());
    if (d <= bestDistance && (best === undefined || d < bestDistance)) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function unknownKeyExpectation(path: readonly string[]): string {
  const key = path[path.length - 1]!;
  const parent = schemaAt(path.slice(0, -1));
  const siblings = parent?.properties ? Object.keys(parent.properties) : [];
  const near = unsafeKey(key) ? undefined : closest(key, siblings);
  // Worded as applySet words an unknown --set key (README quotes that line).
  const hint = near
    ? ` (did you mean ${[...path.slice(0, -1), near].join('.')}?)`
    : key === '<<'
      ? ' (YAML merge keys, <<, are not supported)'
      : '';
  return `a known config key${hint}; unknown keys are refused (see \`hyp schema\`)`;
}

function isUnknownKey(message: string): boolean {
  return message.startsWith('Unexpected property');
}

function expectedFor(schema: TSchema, message: string, path: string): string {
  if (isUnknownKey(message)) return unknownKeyExpectation(path.split('.'));
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
    const article = schema.type === 'integer' ? 'an' : 'a';
    return `${article} ${schema.type}${bounds.length ? ` ${bounds.join(' and ')}` : ''} (${what})`;
  }
  if (schema.type === 'boolean') return 'a boolean (true or false)';
  if (schema.type === 'array') return `a list (${what})`;
  if (schema.type === 'object') return `a mapping (${what})`;
  return String(what);
}

function semanticChecks(config: Config, sources: Map<string, string>, issues: ConfigIssue[], cwd: string) {
  const push = (path: string, value: unknown, expected: string) =>
    issues.push({ path, value, expected, source: sourceOf(sources, path) });

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

  // As the workers read them (clientip.ts): a bad entry would fail every worker's start, forever.
  config.server.trusted_proxies.forEach((entry, i) => {
    try {
      proxyaddr.compile(entry);
    } catch {
      push(
        `server.trusted_proxies.${i}`,
        entry,
        'an IP address, a CIDR (10.0.0.0/8), or loopback, linklocal or uniquelocal',
      );
    }
  });

  // As the hub compares them (hub.ts): with the Origin header's exact text. An
  // entry in another form matches no browser, and every page's upgrade is refused.
  config.websocket.allowed_origins.forEach((entry, i) => {
    const unlike = unlikeOrigin(entry);
    if (unlike !== undefined) push(`websocket.allowed_origins.${i}`, entry, unlike);
  });

  const aes = config.websocket.security.aes_key_file;
  if (aes) {
    const size = fileSize(resolve(cwd, aes));
    if (size === undefined)
      push('websocket.security.aes_key_file', aes, 'a readable file holding the raw AES key');
    else if (size !== 32)
      push('websocket.security.aes_key_file', aes, `a file of exactly 32 bytes (AES-256), it has ${size}`);
  }
  const hmac = config.websocket.security.hmac_key_file;
  if (hmac) {
    const size = fileSize(resolve(cwd, hmac));
    if (size === undefined)
      push('websocket.security.hmac_key_file', hmac, 'a readable file holding the raw HMAC key');
    // as the workers read it (security.ts): an empty key would stop each of them, after the bind
    else if (size === 0)
      push(
        'websocket.security.hmac_key_file',
        hmac,
        'a file of at least 1 byte (the raw HMAC key), it is empty',
      );
  }
  const replay = config.websocket.security.replay_window;
  if (!aes && !hmac && (parseDuration(replay) ?? 0) > 0) {
    push(
      'websocket.security.replay_window',
      replay,
      '0s without websocket.security.aes_key_file or hmac_key_file: replay protection checks sealed frames only',
    );
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

/**
 * Why `entry` is not an origin as a browser sends it in the Origin header
 * (scheme://host[:port], lower case, no path, no default port), else
 * undefined. `*` (any) and `null` (opaque origins) are taken as they stand.
 */
function unlikeOrigin(entry: string): string | undefined {
  if (entry === '*' || entry === 'null') return undefined;
  const withScheme = entry.includes('://');
  let origin: string | undefined;
  try {
    origin = new URL(
      withScheme ? entry : `${/^(localhost|127\.|\[::1\])/.test(entry) ? 'http' : 'https'}://${entry}`,
    ).origin;
  } catch {}
  // Schemes without a host-based origin (chrome-extension://id): the form alone is checked.
  if (withScheme && origin === 'null' && /^[a-z][a-z0-9+.-]*:\/\/[^/?#\s@*]+$/.test(entry)) return undefined;
  if (origin === entry && !entry.includes('*')) return undefined;
  const guess =
    origin !== undefined && origin !== 'null' && !entry.includes('*') ? `; did you mean ${origin}?` : '';
  return `an origin as a browser sends it in the Origin header: scheme://host[:port], lower case, no path or trailing /, no default port, such as https://app.example.com, or "*" for any (matched exactly: no wildcards)${guess}`;
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
