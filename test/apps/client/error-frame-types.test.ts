/**
 * HypErrorFrame is discriminated by `code`: a handler of
 * HYP_E_WS_RECOVERY_FAILED (or HYP_E_WS_RECOVERY_BUSY) reads `e.channel` as
 * a string, without the `!` the single shape with an optional channel
 * needed, while code reading `code`, `message`, `channel` and `offset` as
 * before still compiles; a frame of such a code without a channel does not.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function tsc(file: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [
        `${root}node_modules/typescript/bin/tsc`,
        '--ignoreConfig',
        '--noEmit',
        '--strict',
        '--skipLibCheck',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--lib',
        'es2023,dom',
        '--types',
        'node',
        file,
      ],
      { cwd: root, timeout: 120_000 },
      (_err, stdout) => resolve(stdout),
    );
  });
}

describe('HypErrorFrame', () => {
  it('types the channel of HYP_E_WS_RECOVERY_FAILED as a string; older readers still compile', async () => {
    expect(await tsc('test/apps/client/error-frame-types.fixture.ts')).toBe('');
  }, 120_000);

  it('refuses a HYP_E_WS_RECOVERY_FAILED frame without a channel', async () => {
    // a fresh checkout has no node_modules/.cache until a tool makes one
    mkdirSync(`${root}node_modules/.cache`, { recursive: true });
    const file = `${root}node_modules/.cache/error-frame-missing-channel.ts`;
    writeFileSync(
      file,
      `import type { HypErrorFrame } from '${root}apps/client/index.js';\n` +
        `export const f: HypErrorFrame = { code: 'HYP_E_WS_RECOVERY_FAILED', message: 'lost' };\n`,
    );
    expect(await tsc(file)).toContain("Property 'channel' is missing");
  }, 120_000);
});
