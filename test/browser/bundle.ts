/**
 * Bundles the page harness (and with it the client library, apps/client) for
 * the browser with esbuild. `platform: 'browser'` makes any Node built-in in
 * the graph a build error, so a passing build proves the bundle has none.
 */
import { join } from 'node:path';
import { build } from 'esbuild';

export interface Bundle {
  file: string;
  bytes: number;
  inputs: string[];
}

export async function bundleHarness(root: string, outDir: string): Promise<Bundle> {
  const file = join(outDir, 'harness.js');
  const result = await build({
    entryPoints: [join(root, 'test', 'browser', 'harness.ts')],
    outfile: file,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110'],
    metafile: true,
    logLevel: 'silent',
  });
  const out = Object.values(result.metafile.outputs)[0];
  return { file, bytes: out?.bytes ?? 0, inputs: Object.keys(result.metafile.inputs) };
}
