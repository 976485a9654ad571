/**
 * An app that tsc compiled to CommonJS: in a `"type": "commonjs"` project
 * (what `npm init -y` writes with npm 11) `export default defineApp(...)`
 * becomes `exports.default = ...` behind an `__esModule` marker, and
 * `import()` sees `{ __esModule: true, default: <the app> }`. The worker
 * takes the app from there; a CommonJS module whose `exports.default` is no
 * app still stops the pod with HYP_E_APP_INVALID.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Running, root, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

/** tsc's CommonJS output (module commonjs) for a module whose default export is `value`. */
function tscCommonJs(value: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-cjs-app-'));
  const file = join(dir, 'app.cjs');
  writeFileSync(
    file,
    `"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
const hyp_1 = require(${JSON.stringify(join(root, 'dist', 'apps', 'server', 'index.js'))});
exports.default = ${value};
`,
  );
  return file;
}

describe('an app tsc compiled to CommonJS', () => {
  it('exports.default = defineApp(...) is served', async () => {
    const app = tscCommonJs(
      "(0, hyp_1.defineApp)((app) => { app.get('/cjs', (c) => c.text('from commonjs')); })",
    );
    sup = await startSupervisor({ app, workers: 1 });
    const res = await fetch(`http://127.0.0.1:${sup.httpPort}/cjs`);
    expect([res.status, await res.text()]).toEqual([200, 'from commonjs']);
  }, 60_000);

  it('exports.default that is no app: HYP_E_APP_INVALID, exit 2', async () => {
    sup = await startSupervisor({ app: tscCommonJs('{ routes: [] }'), workers: 1, ready: false });
    const running = sup;
    const exit = await Promise.race([
      running.exited,
      until(() => undefined, 'supervisor exit', 20_000).then(() => ({ code: -1 })),
    ]);
    expect(exit.code).toBe(2);
    expect(running.logs.some((l) => l.code === 'HYP_E_APP_INVALID')).toBe(true);
  }, 60_000);
});
