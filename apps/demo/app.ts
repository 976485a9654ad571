/**
 * The demo app `npm start` runs under the supervisor: HTTP on :8080, admin
 * on :9090 (see hyp.yaml).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineApp } from '../server/index.js';

/** The demo's static files: next to this module in the sources, under the repository root from dist/. */
const here = dirname(fileURLToPath(import.meta.url));
export const publicDir = existsSync(join(here, 'public'))
  ? join(here, 'public')
  : join(here, '..', '..', '..', 'apps', 'demo', 'public');

const maxSlowMs = 60_000;

export default defineApp((app, { generation, config }) => {
  app.static('/static', publicDir);
  // A browser opening the demo's root lands on its page rather than a 404.
  app.get('/', (c) => c.redirect('/static/'));

  app.get('/api/ping', (c) => c.text('pong'));

  app.get('/api/slow', async (c) => {
    const raw = c.query('ms') ?? '0';
    const ms = Number(raw);
    if (!/^\d+$/.test(raw) || ms > maxSlowMs) {
      return c
        .status(400)
        .json({ error: { code: 'HYP_E_BAD_REQUEST', message: `ms must be an integer 0..${maxSlowMs}` } });
    }
    await new Promise((resolve) => setTimeout(resolve, ms));
    return c.text('done');
  });

  app.get('/api/worker', (c) => c.json({ pid: process.pid, generation }));

  // WebSocket hub on websocket.path (/ws): any client may subscribe and publish to any channel.
  app.websocket();

  // Raw TCP echo on the supervisor-held listener `echo` (tcp.echo.addr, :7000 in hyp.yaml).
  if (config.tcp.echo) {
    app.tcp('echo', async (conn) => {
      for await (const chunk of conn) await conn.write(chunk);
    });
  }
});
