import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const outDir = `${root}node_modules/.cache/hyp-ws-test`;

/**
 * Compiles a TypeScript fixture (and what it imports) with the project's
 * tsc so a test can run it as a real child process. Output goes under
 * node_modules/.cache, where bare imports still resolve.
 */
export async function compileFixture(relativePath: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    execFile(
      process.execPath,
      [
        `${root}node_modules/typescript/bin/tsc`,
        '--ignoreConfig',
        relativePath,
        '--outDir',
        outDir,
        '--rootDir',
        '.',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--skipLibCheck',
        '--types',
        'node',
      ],
      { cwd: root },
      (err, stdout) => (err ? reject(new Error(`tsc failed: ${stdout}`)) : resolve()),
    );
  });
  return `${outDir}/${relativePath.replace(/\.ts$/, '.js')}`;
}
