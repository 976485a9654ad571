/**
 * websocket.allowed_origins is compared with the Origin header's exact text
 * (hub.ts), and a browser sends a serialized origin: scheme://host[:port],
 * lower case, no path, no default port. An entry in any other form matches
 * no browser, so every upgrade from a page is refused (403 HYP_E_WS_ORIGIN)
 * while the pod looks healthy. Measured with the demo before this check:
 * HYP_WEBSOCKET_ALLOWED_ORIGINS=a.example,https://b.example/ refused
 * Origin https://a.example and https://b.example with 403.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../supervisor/config/load.js';
import { issuesOf } from './issues.js';

const cwd = () => mkdtempSync(join(tmpdir(), 'hyp-cfg-'));

describe('websocket.allowed_origins', () => {
  it('accepts origins as browsers send them, "*" and "null"', () => {
    const list = [
      'https://app.example.com',
      'http://localhost:3000',
      'https://[::1]:8443',
      'chrome-extension://abcdefghijklmnop',
      '*',
      'null',
    ];
    const env = { HYP_WEBSOCKET_ALLOWED_ORIGINS: list.join(',') };
    expect(loadConfig({ env, cwd: cwd() }).config.websocket.allowed_origins).toEqual(list);
  });

  it.each([
    ['app.example.com', 'https://app.example.com'],
    ['https://app.example.com/', 'https://app.example.com'],
    ['https://App.Example.com', 'https://app.example.com'],
    ['https://app.example.com:443', 'https://app.example.com'],
    ['https://app.example.com/login', 'https://app.example.com'],
    ['localhost:3000', 'http://localhost:3000'],
  ])('refuses %j at start (exit 2), naming the item and the origin it may mean', (entry, meant) => {
    const issues = issuesOf(() =>
      loadConfig({ env: { HYP_WEBSOCKET_ALLOWED_ORIGINS: `https://ok.example,${entry}` }, cwd: cwd() }),
    );
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({
      path: 'websocket.allowed_origins.1',
      value: entry,
      source: 'env HYP_WEBSOCKET_ALLOWED_ORIGINS',
    });
    expect(issues[0]!.expected).toContain('an origin as a browser sends it');
    expect(issues[0]!.expected).toContain(`did you mean ${meant}?`);
  });

  it('refuses a wildcard pattern (matched exactly, it matches nothing), without a guess', () => {
    const issues = issuesOf(() =>
      loadConfig({
        env: {},
        cwd: cwd(),
        sets: ['websocket.allowed_origins=https://a.example,*.example.com,https://*.example.com'],
      }),
    );
    expect(issues.map((i) => [i.path, i.value, i.source])).toEqual([
      ['websocket.allowed_origins.1', '*.example.com', '--set websocket.allowed_origins'],
      ['websocket.allowed_origins.2', 'https://*.example.com', '--set websocket.allowed_origins'],
    ]);
    for (const issue of issues) {
      expect(issue.expected).toContain('no wildcards');
      expect(issue.expected).not.toContain('did you mean');
    }
  });
});
