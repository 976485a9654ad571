/**
 * The Express habit of calling next() without awaiting it, in a real
 * supervised worker: a client's bad request body must cost neither the
 * request's answer nor the worker.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type Running, root, startSupervisor } from '../../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

/** An app module written at run time: it imports the built package by path. */
function writeApp(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-audit-app-'));
  const file = join(dir, 'app.mjs');
  const hyp = pathToFileURL(join(root, 'dist', 'apps', 'server', 'index.js')).href;
  writeFileSync(file, `import { defineApp } from ${JSON.stringify(hyp)};\n${source}`);
  return file;
}

describe('a middleware that calls next() without awaiting it, in a worker', () => {
  it('answers broken JSON 400 and keeps its worker (before: no answer, worker replaced)', async () => {
    const app = writeApp(`
export default defineApp((app) => {
  app.use((c, next) => { c.header('x-powered-by', 'hyp'); next(); });
  app.post('/items', async (c) => c.json(await c.body('json'), 201));
});
`);
    sup = await startSupervisor({ app, workers: 1 });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const [worker] = (await sup.status()).workers;
    const post = (body: string) =>
      fetch(`${base}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(10_000),
      }).then(async (res) => [res.status, await res.json()]);
    for (let i = 0; i < 3; i++) {
      expect(await post('{"a":')).toEqual([
        400,
        { error: { code: 'HYP_E_BODY_INVALID', message: expect.stringContaining('not valid JSON') } },
      ]);
      expect(await post(`{"n":${i}}`)).toEqual([201, { n: i }]);
    }
    const uncaught = sup.logs.filter((l) => String(l.msg).startsWith('uncaught exception'));
    expect(uncaught).toEqual([]);
    const after = await sup.status();
    expect([after.generation, after.workers.map((w) => w.pid), after.other_workers]).toEqual([
      1,
      [worker!.pid],
      [],
    ]);
  });
});
