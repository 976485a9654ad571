import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../supervisor/config/load.js';
import { cli, fixtureApp } from '../helpers/supervisor.js';
import { issuesOf } from './config/issues.js';

/**
 * WebSocket key files are checked when the config loads, like every other
 * setting (ARCHITECTURE §5): an empty HMAC key file used to pass, and the pod
 * stopped only when its first worker read it (HYP_E_WS_KEY), after the
 * supervisor had bound its sockets.
 */

function dir(files: Record<string, string | Buffer> = {}): string {
  const d = mkdtempSync(join(tmpdir(), 'hyp-wskeys-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(d, name), content);
  return d;
}

describe('websocket key files at config load', () => {
  it('an empty HMAC key file is refused with its key path, the file and what is expected', () => {
    const d = dir({ 'empty.key': '' });
    const issues = issuesOf(() =>
      loadConfig({ env: { HYP_WEBSOCKET_SECURITY_HMAC_KEY_FILE: 'empty.key' }, cwd: d }),
    );
    expect(issues.map((i) => [i.path, i.value])).toEqual([['websocket.security.hmac_key_file', 'empty.key']]);
    expect(issues[0]!.expected).toMatch(/at least 1 byte.*it is empty/);
  });

  it('a one-byte HMAC key file loads (any non-empty key is an HMAC key)', () => {
    const d = dir({ 'h.key': 'x' });
    const { config } = loadConfig({ env: {}, cwd: d, sets: ['websocket.security.hmac_key_file=h.key'] });
    expect(config.websocket.security.hmac_key_file).toBe('h.key');
  });

  it('hyp run with an empty HMAC key file: exit 2, HYP_E_CONFIG_INVALID naming the key; no worker starts', () => {
    const d = dir({ 'empty.key': '' });
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'run',
        fixtureApp('contracts'),
        '--set',
        'server.addr=127.0.0.1:0',
        '--set',
        'admin.addr=127.0.0.1:0',
        '--set',
        'websocket.security.hmac_key_file=empty.key',
      ],
      { cwd: d, encoding: 'utf8', env: { ...process.env, HYP_LOG_FORMAT: 'json' }, timeout: 30_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/HYP_E_CONFIG_INVALID/);
    expect(r.stderr).toMatch(/websocket\.security\.hmac_key_file: got "empty\.key"/);
    // the worker's own check never ran: the supervisor stopped first
    expect(r.stderr).not.toMatch(/HYP_E_WS_KEY/);
    expect(r.stderr + r.stdout).not.toMatch(/"msg":"worker/);
  });
});
