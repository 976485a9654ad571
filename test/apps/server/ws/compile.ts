import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const cacheDir = `${root}node_modules/.cache/hyp-ws-test`;

/**
 * Compiles a TypeScript fixture (and what it imports) with the project's
 * tsc so a test can run it as a real child process. Output goes under
 * node_modules/.cache, where bare imports still resolve.
 */
export async function compileFixture(relativePath: string): Promise<string> {
  // One directory per compile: spec files run in parallel, and a tsc writing into a directory
  // another spec's child process is importing from made it fail with a half-written module.
  mkdirSync(cacheDir, { recursive: true });
  removeDeadOnes();
  const outDir = mkdtempSync(`${cacheDir}/${process.pid}-`);
  process.once('exit', () => rmSync(outDir, { recursive: true, force: true }));
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

/** Directories of spec processes that are gone (a worker killed rather than exited leaves its own). */
function removeDeadOnes(): void {
  for (const name of readdirSync(cacheDir)) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      rmSync(`${cacheDir}/${name}`, { recursive: true, force: true });
    }
  }
}
