/**
 * The `config` part of helm/hyp/values.schema.json is derived from hyp's own
 * configuration schema, so a misspelled hyp.yaml key in `values.config` fails
 * `helm install` just as it would fail `hyp run`. Keys the chart sets itself
 * (listen addresses, drain timings, the PID file, TCP addresses) are left out:
 * they come from their own values.
 */
import { ConfigSchema } from '../../supervisor/config/schema.js';

type JsonSchema = { [key: string]: unknown };

/** Key paths owned by the chart's templates; `*` matches any TCP service name. */
export const chartOwnedKeys: readonly string[] = [
  'app',
  'server.addr',
  'admin.addr',
  'drain.delay',
  'drain.timeout',
  'supervisor.pid_file',
  'tcp.*.addr',
];

// `required` goes because every hyp key has a default; `format` because Helm's
// validators do not know hyp's formats (hyp checks them at start); the rest is noise.
const dropped = new Set(['required', 'default', 'format', '$id', '$schema', 'title']);

function strip(node: unknown, path: string[]): unknown {
  if (Array.isArray(node)) return node.map((item) => strip(item, path));
  if (node === null || typeof node !== 'object') return node;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node as JsonSchema)) {
    if (dropped.has(key)) continue;
    if (key === 'properties') {
      const props: JsonSchema = {};
      for (const [name, child] of Object.entries(value as JsonSchema)) {
        const childPath = [...path, name];
        if (chartOwnedKeys.includes(childPath.join('.'))) continue;
        props[name] = strip(child, childPath);
      }
      out.properties = props;
    } else if (key === 'patternProperties') {
      const props: JsonSchema = {};
      for (const [pattern, child] of Object.entries(value as JsonSchema))
        props[pattern] = strip(child, [...path, '*']);
      out.patternProperties = props;
      // a record (tcp services): a name outside the pattern is a mistake too
      if ((node as JsonSchema).additionalProperties === undefined) out.additionalProperties = false;
    } else {
      out[key] = strip(value, path);
    }
  }
  return out;
}

/** The JSON Schema of `values.config`, from hyp's ConfigSchema. */
export function configValuesSchema(): JsonSchema {
  const plain = JSON.parse(JSON.stringify(ConfigSchema)) as JsonSchema;
  const schema = strip(plain, []) as JsonSchema;
  return { ...schema, description: "extra hyp.yaml keys (see `hyp schema`), under the chart's own" };
}

/** Every key path (objects only) a schema allows, e.g. `server.limits.body_limit`. */
export function keyPaths(schema: unknown, prefix = ''): string[] {
  if (schema === null || typeof schema !== 'object') return [];
  const node = schema as JsonSchema;
  const out: string[] = [];
  for (const [name, child] of Object.entries((node.properties ?? {}) as JsonSchema)) {
    const path = prefix ? `${prefix}.${name}` : name;
    out.push(path, ...keyPaths(child, path));
  }
  for (const child of Object.values((node.patternProperties ?? {}) as JsonSchema)) {
    out.push(...keyPaths(child, prefix ? `${prefix}.*` : '*'));
  }
  return out;
}
