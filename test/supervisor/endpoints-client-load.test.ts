/**
 * drain.endpoints.service with a Kubernetes client that cannot load. On a
 * project that installs hyp, npm gives `@kubernetes/client-node` 2.x the
 * undici it asks for (8.x: Node >= 22.19; hyp's own `overrides` apply only
 * in this repository), and on Node 20 undici 8 throws while it loads. The
 * watch must report that once and leave the drain to drain.delay; on Node
 * 20 the import's failure also came back as an unhandled rejection that
 * ended the supervisor (exit 1, PID file left behind).
 *
 * A scratch install holds the watch's compiled module, an ESM stand-in for
 * the client that imports `undici` as the real one does, and a CommonJS
 * `undici` that throws as undici 8 does on Node 20.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/consumer.js';
import { root } from '../helpers/supervisor.js';

let project: string;

function write(path: string, text: string): void {
  mkdirSync(join(project, path, '..'), { recursive: true });
  writeFileSync(join(project, path), text);
}

beforeAll(() => {
  project = scratchDir('hyp-endpoints-load-');
  const hyp = join(project, 'node_modules', 'hyp', 'supervisor');
  mkdirSync(hyp, { recursive: true });
  write('node_modules/hyp/package.json', '{ "name": "hyp", "type": "module" }\n');
  for (const file of ['endpoints.js', 'errors.js'])
    copyFileSync(join(root, 'dist', 'supervisor', file), join(hyp, file));
  write(
    'node_modules/@kubernetes/client-node/package.json',
    '{ "name": "@kubernetes/client-node", "type": "module", "exports": "./index.js" }\n',
  );
  // as the real client: its index re-exports modules that import undici
  write('node_modules/@kubernetes/client-node/index.js', "export * from './config.js';\n");
  write(
    'node_modules/@kubernetes/client-node/config.js',
    "import { Agent } from 'undici';\nexport class KubeConfig {}\nexport { Agent };\n",
  );
  write('node_modules/undici/package.json', '{ "name": "undici", "main": "index.js" }\n');
  write('node_modules/undici/index.js', "module.exports.Agent = require('./lib/decompress.js');\n");
  // undici 8's lib/interceptor/decompress.js on Node 20, whose zlib has no createZstdDecompress
  write(
    'node_modules/undici/lib/decompress.js',
    "const zlib = require('node:zlib');\nmodule.exports = zlib.createZstdDecompressNowhere.bind(null);\n",
  );
  write(
    'watch.mjs',
    `import { EndpointsWatch } from './node_modules/hyp/supervisor/endpoints.js';
const warnings = [];
const log = { warn: (o, m) => warnings.push({ ...o, msg: m }), info() {}, debug() {}, error() {} };
const watch = new EndpointsWatch({ service: 'web', namespace: 'web', pod: 'web-1' }, log, {
  KUBECONFIG: '${join(project, 'kubeconfig')}',
});
await watch.start();
// an unhandled rejection surfaces within a few turns of the failed import
setTimeout(() => console.log(JSON.stringify({ view: watch.view(), warnings })), 200);
`,
  );
  write('kubeconfig', 'apiVersion: v1\nkind: Config\n');
});

afterAll(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

describe('drain.endpoints.service with a client that cannot load', () => {
  it('warns once with the cause and keeps running (the drain falls back to drain.delay)', () => {
    const run = spawnSync(process.execPath, ['watch.mjs'], {
      cwd: project,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const out = JSON.parse(run.stdout) as {
      view: { state: string; cause?: string };
      warnings: { code: string; msg: string }[];
    };
    expect(out.view.state).toBe('unknown');
    expect(out.view.cause).toContain(`undici cannot load on Node ${process.versions.node}`);
    expect(out.warnings.map((w) => w.code)).toEqual(['HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE']);
  });
});
