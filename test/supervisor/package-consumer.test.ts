/**
 * hyp as a dependency of someone else's project: the tarball `npm pack`
 * makes, installed as npm installs it (extracted into node_modules/hyp, its
 * dependencies beside it, no registry), and used only through what it
 * publishes: the exports map, the types, the `hyp` bin.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { linkModules, scratchDir, typeCheck, writeConsumerPackage } from '../helpers/consumer.js';
import { collectLogLines, type LogLine, root, until } from '../helpers/supervisor.js';

const repoPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  dependencies: Record<string, string>;
};

let work: string;
let consumer: string;
let packed: string[];
let bin: string;

beforeAll(() => {
  work = scratchDir();
  // One pack for the suite; dist/ is what `npm run build` left (tests run dist/).
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error', npm_config_update_notifier: 'false' },
    timeout: 120_000,
  });
  const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packed = info!.files.map((f) => f.path);
  consumer = join(work, 'consumer');
  const installed = join(consumer, 'node_modules', 'hyp');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', join(work, info!.filename), '-C', installed, '--strip-components=1']);
  // What `npm i` would put beside it: the declared runtime dependencies (devDependencies never).
  linkModules(consumer, Object.keys(repoPackage.dependencies));
  writeConsumerPackage(consumer);
  bin = join(installed, repoPackage.bin.hyp!);
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function hyp(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: consumer, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the tarball npm pack makes', () => {
  it('holds every target of exports, types and bin, and the worker entry the supervisor spawns', () => {
    const targets = Object.values(repoPackage.exports).flatMap((t) =>
      typeof t === 'string' ? [t] : Object.values(t),
    );
    for (const t of [...targets, ...Object.values(repoPackage.bin), 'dist/apps/server/worker.js'])
      expect(packed).toContain(t.replace(/^\.\//, ''));
    expect(packed).toContain('dist/apps/server/index.d.ts');
    expect(packed).toContain('dist/apps/client/index.d.ts');
    expect(packed).toContain('hyp.schema.json');
    // README links to docs/ and to the annotated hyp.yaml.
    expect(packed).toContain('docs/http.md');
    expect(packed).toContain('hyp.yaml');
  });

  it("holds none of the repository's tests, benchmarks, CI, chart or build files", () => {
    const foreign = packed.filter(
      (p) =>
        /^(test|dist\/test|dist\/apps\/demo|\.ci|helm)\//.test(p) ||
        /(^|\/)(Dockerfile|tsconfig\.json|vitest\.config\.ts|biome\.json)$/.test(p) ||
        /\.map$/.test(p) ||
        (p.endsWith('.ts') && !p.endsWith('.d.ts')),
    );
    expect(foreign).toEqual([]);
  });
});

describe('a project that installed the tarball', () => {
  it('imports defineApp from "hyp" and HypWebSocket from "hyp/client"; deep paths are not exported', () => {
    const script = `
      const server = await import('hyp');
      const client = await import('hyp/client');
      let deep = 'resolved';
      try { await import('hyp/dist/apps/server/app.js'); } catch (e) { deep = e.code; }
      console.log(JSON.stringify([typeof server.defineApp, typeof server.HypError, typeof client.HypWebSocket, deep]));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: consumer,
      encoding: 'utf8',
    });
    expect(JSON.parse(out)).toEqual(['function', 'function', 'function', 'ERR_PACKAGE_PATH_NOT_EXPORTED']);
  });

  it('type-checks the README app and the hyp/client example with tsc --strict under node16, nodenext and bundler resolution', () => {
    mkdirSync(join(consumer, 'src'), { recursive: true });
    writeFileSync(
      join(consumer, 'src', 'app.ts'),
      `import { type AppContext, defineApp, HypError } from 'hyp';

async function connectToDatabase(): Promise<void> {}
async function closeDatabase(): Promise<void> {}

export default defineApp(async (app, { log }: AppContext) => {
  await connectToDatabase();
  app.get('/api/ping', (c) => c.text('pong'));
  app.get('/api/users/:id', (c) => c.json({ id: c.param('id') }));
  app.get('/api/missing', (c) => {
    throw new HypError('HYP_E_NOT_FOUND', { method: c.method, path: c.path });
  });
  app.onShutdown(() => closeDatabase());
  log.info('routes added');
});
`,
    );
    writeFileSync(
      join(consumer, 'src', 'client.ts'),
      `import { HypWebSocket } from 'hyp/client';

export function open(url: string): HypWebSocket {
  const ws = new HypWebSocket(url, { codec: 'msgpack', reconnect: { initialDelayMs: 250, maxDelayMs: 10_000 } });
  ws.subscribe('news', (m) => console.log(m.json<{ headline: string }>().headline));
  ws.on('error', (e) => console.warn(e.code, e.message));
  return ws;
}
`,
    );
    // hyp's declarations are checked too; they name ws's types, so the
    // project has @types/ws, which comes with hyp as a dependency.
    linkModules(consumer, ['@types/ws']);
    for (const [module, moduleResolution] of [
      ['node16', 'node16'],
      ['nodenext', 'nodenext'],
      ['esnext', 'bundler'],
    ]) {
      const r = typeCheck(
        consumer,
        moduleResolution!,
        {
          module,
          moduleResolution,
          skipLibCheck: false,
          rootDir: 'src',
          outDir: 'dist',
          noEmit: moduleResolution !== 'node16',
        },
        ['src'],
      );
      expect(`${moduleResolution}: ${r.output}`).toBe(`${moduleResolution}: `);
      expect(r.status).toBe(0);
    }
    expect(existsSync(join(consumer, 'dist', 'app.js'))).toBe(true);
  });
});

describe('the installed hyp bin', () => {
  let proc: ChildProcess | undefined;
  afterEach(async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    }
    proc = undefined;
  });

  it('hyp run src/app.ts serves the copy tsc wrote to dist/app.js (rootDir src), and drains on SIGTERM', async () => {
    // The previous test compiled src/app.ts into dist/app.js.
    expect(existsSync(join(consumer, 'dist', 'app.js'))).toBe(true);
    const pidFile = join(work, 'hyp.pid');
    proc = spawn(
      process.execPath,
      [
        bin,
        'run',
        'src/app.ts',
        ...['server.addr=127.0.0.1:0', 'admin.addr=127.0.0.1:0', `supervisor.pid_file=${pidFile}`]
          .concat(['supervisor.workers=1', 'drain.delay=0'])
          .flatMap((s) => ['--set', s]),
      ],
      { cwd: consumer, env: { ...process.env, HYP_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const logs: LogLine[] = [];
    let stderr = '';
    collectLogLines(proc.stdout!, logs);
    proc.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    const exited = new Promise<number | null>((r) => proc!.once('exit', (code) => r(code)));
    const started = await Promise.race([
      until(() => logs.find((l) => l.msg === 'supervisor ready'), 'supervisor ready', 60_000),
      exited.then((code) => {
        throw new Error(`hyp run exited with ${code}: ${stderr}`);
      }),
    ]);
    expect(started).toBeDefined();
    const port = logs.find((l) => l.msg === 'holding listener' && l.listener === 'http')!.port;
    const adminPort = logs.find((l) => l.msg === 'admin server listening')!.port;
    expect(logs.find((l) => l.msg === 'supervisor started')!.app).toBe(join(consumer, 'dist', 'app.js'));
    const ping = await fetch(`http://127.0.0.1:${port}/api/ping`);
    expect([ping.status, await ping.text()]).toEqual([200, 'pong']);
    const missing = await fetch(`http://127.0.0.1:${port}/api/missing`);
    expect([missing.status, ((await missing.json()) as { error: { code: string } }).error.code]).toEqual([
      404,
      'HYP_E_NOT_FOUND',
    ]);
    const status = hyp(['status', '--admin', `http://127.0.0.1:${adminPort}`]);
    expect(status.stdout).toMatch(/^state: ready {2}generation: 1 {2}ready: true/);
    expect(status.code).toBe(0);
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(existsSync(pidFile)).toBe(false);
  }, 90_000);

  it('ships the hyp.schema.json that its own `hyp schema` prints (editors point at node_modules/hyp/hyp.schema.json)', () => {
    const r = hyp(['schema']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(readFileSync(join(consumer, 'node_modules', 'hyp', 'hyp.schema.json'), 'utf8'));
  });

  it('hyp --version and -v print the installed version; hyp help <verb> prints that verb’s help', () => {
    for (const flag of ['--version', '-v', 'version']) {
      const r = hyp([flag]);
      expect([r.code, r.stdout]).toEqual([0, `hyp ${repoPackage.version} (node ${process.version})\n`]);
    }
    const help = hyp(['help', 'drain']);
    expect([help.code, help.stdout]).toEqual([0, hyp(['drain', '--help']).stdout]);
    expect(help.stdout).toMatch(/^Usage: hyp drain/);
  });

  it('hyp run <a directory> stops at once with HYP_E_APP_NOT_FOUND (exit 2), before any worker', () => {
    // `hyp run build` instead of `hyp run build/app.js`: every worker would fail to import it.
    mkdirSync(join(consumer, 'build'), { recursive: true });
    const r = hyp(['run', 'build', '--set', 'server.addr=127.0.0.1:0', '--set', 'admin.addr=127.0.0.1:0']);
    expect(r.stderr).toBe(
      `hyp: HYP_E_APP_NOT_FOUND: app module ${join(consumer, 'build')} cannot be loaded: not a file; give the module itself, such as dist/app.js\n`,
    );
    expect(r.code).toBe(2);
  });

  it.each([
    [['run', 'app.js', 'other.js'], 'unexpected argument "other.js"; see hyp run --help'],
    [['status', 'now'], 'unexpected argument "now"; see hyp status --help'],
    [['restart', '--wait'], '--wait is an option of hyp drain, not of hyp restart'],
    [['drain', '--json'], '--json is an option of hyp status, not of hyp drain'],
    [['run', 'app.js', '--no-wait'], '--no-wait is an option of hyp restart, not of hyp run'],
  ])('hyp %j is a usage error (exit 64, one line), not silently ignored', (args, message) => {
    const r = hyp(args);
    expect(r.stderr).toBe(
      `hyp: HYP_E_USAGE: ${message}${message.endsWith('help') ? '' : `; see hyp ${args[0]} --help`}\n`,
    );
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
  });
});
