/** What the admin server's flood specs share. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root } from '../helpers/supervisor.js';

/**
 * An app whose workers each serve 90 000 series (about 6 MB of /metrics
 * text, more than the loopback socket buffers take), with `more` (module
 * code inside its defineApp callback, given `app` and `promClient`) added.
 * `keyWidth` widens each series' label value (40 characters by default:
 * about 6 MB; 450: about 41 MB).
 */
export function wideMetricsApp(more = '', opts: { keyWidth?: number } = {}): string {
  const file = join(mkdtempSync(join(tmpdir(), 'hyp-admin-wide-')), 'wide-metrics.mjs');
  writeFileSync(
    file,
    `import { defineApp } from ${JSON.stringify(join(root, 'dist', 'apps', 'server', 'index.js'))};
import promClient from ${JSON.stringify(join(root, 'node_modules', 'prom-client', 'index.js'))};
export default defineApp((app) => {
  const wide = new promClient.Gauge({ name: 'app_wide', help: 'many series', labelNames: ['key'], registers: [app.registry] });
  for (let i = 0; i < 90000; i++) wide.set({ key: 'key-' + String(i).padStart(${opts.keyWidth ?? 40}, '0') }, i);
${more}
});
`,
  );
  return file;
}

/** A connection that sends `request` and never reads what comes back. */
export function neverReads(port: number, request: string): Socket {
  const socket = connect(port, '127.0.0.1', () => {
    socket.write(request);
    socket.pause();
  });
  socket.on('error', () => {});
  return socket;
}
