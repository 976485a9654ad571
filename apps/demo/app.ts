/**
 * The demo app `npm start` runs under the supervisor: HTTP on :8080, admin
 * on :9090 (see hyp.yaml).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineApp } from '../server/index.js';

const maxSlowMs = 60_000;

export default defineApp((app, { generation }) => {
  app.get('/api/ping', (c) => c.text('pong'));

  app.get('/api/slow', async (c) => {
    const raw = c.query('ms') ?? '0';
    const ms = Number(raw);
    if (!/^\d+$/.test(raw) || ms > maxSlowMs) {
      return c.status(400).json({ error: { code: 'HYP_E_BAD_REQUEST', message: `ms must be an integer 0..${maxSlowMs}` } });
    }
    await new Promise((resolve) => setTimeout(resolve, ms));
    return c.text('done');
  });

  app.get('/api/worker', (c) => c.json({ pid: process.pid, generation }));
});

/** Where the demo's static files live, both from sources and from dist/. */
export const publicDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'apps', 'demo', 'public');
