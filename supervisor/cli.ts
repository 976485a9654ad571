#!/usr/bin/env node
/**
 * The `hyp` command: `run` starts the supervisor; the other verbs talk to a
 * running one through its admin server (found from the config's admin.addr,
 * checked against the PID file).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AdminServer } from './admin.js';
import { ConfigError, jsonSchema, type LoadOptions, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { parseAddress } from './config/units.js';
import { catalog, errorMessage, HypError } from './errors.js';
import { guardIpcParsing } from './ipc-guard.js';
import { createLogger, type Logger } from './log.js';
import { isAlive, readPidFile } from './pidfile.js';
import { Supervisor } from './supervisor.js';
import { checkTlsFiles } from './tlscheck.js';

const packageJson = fileURLToPath(new URL('../../package.json', import.meta.url));

const common = {
  config: { type: 'string', short: 'c' },
  set: { type: 'string', multiple: true },
  admin: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const help: Record<string, string> = {
  '': `hyp — a socket-holding supervisor for Node.js servers

Usage: hyp <command> [options]

Commands:
  run <app>        start the supervisor and workers serving <app>
  restart          rolling restart of the workers (new generation ready before the old drains)
  drain [--wait]   drain the pod: /ready 503, serve drain.delay, drain workers, exit
  status           table of the current workers
  health           liveness and readiness of a running supervisor
  version          print the hyp version (also --version, -v)
  schema           print the JSON Schema of hyp.yaml
  errors           list the error catalog

Common options:
  -c, --config <file>   config file (default: $HYP_CONFIG or ./hyp.yaml if present)
  --set key.path=value  override a config key (repeatable)
  --admin <url>         admin server URL (default: from admin.addr)
  -h, --help            help for a command (or: hyp help <command>)`,
  run: `Usage: hyp run [<app>] [--config file] [--set key=value]...

Start the supervisor: bind every configured listener, write the PID file,
start the admin server and spawn workers serving <app> (an ES module whose
default export is defineApp(...)). Without <app>, the config key \`app\`
(in the config file, or --set app=...) names it. Exit code 2 on invalid configuration.`,
  restart: `Usage: hyp restart [--no-wait]

Start a new worker generation, wait until it is ready, then drain the old one.
Exits 0 when the new generation serves, 1 when it failed (the old one keeps serving).`,
  drain: `Usage: hyp drain [--wait]

Start a pod drain (as SIGTERM does). With --wait, return once the supervisor
has served through drain.delay and is draining its workers, or has exited:
use it as the Kubernetes preStop hook (the SIGTERM that follows joins the drain).`,
  status: 'Usage: hyp status [--json]\n\nShow the supervisor state and its workers.',
  health: 'Usage: hyp health\n\nExit 0 when /health answers 200; prints readiness too.',
  version: 'Usage: hyp version',
  schema: 'Usage: hyp schema\n\nPrint the JSON Schema of the configuration (for editors).',
  errors: 'Usage: hyp errors\n\nList every error code with its message and exit code or HTTP status.',
};

function fail(err: unknown): never {
  if (err instanceof ConfigError) {
    for (const line of err.lines()) process.stderr.write(`hyp: ${line}\n`);
    process.exit(err.exitCode);
  }
  if (err instanceof HypError) {
    process.stderr.write(`hyp: ${err.code}: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`hyp: ${errorMessage(err)}\n`);
  process.exit(1);
}

/** A command `help` has a text for (its own keys: `constructor`, `toString`, ... are no commands). */
function isVerb(word: string): boolean {
  return word !== '' && Object.hasOwn(help, word);
}

function quietOnEpipe(err: NodeJS.ErrnoException): void {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
}

async function main(argv: string[]): Promise<void> {
  const [verb = '', ...rest] = argv;
  // `hyp errors | head`: a reader that stops early ends the command quietly, as
  // SIGPIPE ends Unix tools. Not for `run`, whose stdout is the pod's log.
  if (verb !== 'run') process.stdout.on('error', quietOnEpipe);
  if (verb === '' || verb === '--help' || verb === '-h' || verb === 'help') {
    // `hyp help run` is `hyp run --help`; `hyp help nope` is a usage error, as `hyp nope` is.
    // `hyp help --help` is help's own help: the command list.
    const asked = verb === 'help' ? (rest[0] ?? '') : '';
    const topic = asked === '--help' || asked === '-h' ? '' : asked;
    if (topic !== '' && !isVerb(topic))
      throw new HypError('HYP_E_USAGE', { detail: `unknown command "${topic}"; see hyp --help` });
    process.stdout.write(`${help[topic]}\n`);
    return;
  }
  if (verb === '--version' || verb === '-v') return main(['version', ...rest]);
  if (!isVerb(verb))
    throw new HypError('HYP_E_USAGE', { detail: `unknown command "${verb}"; see hyp --help` });
  let parsed: ReturnType<
    typeof parseArgs<{
      options: typeof common & {
        wait: { type: 'boolean' };
        'no-wait': { type: 'boolean' };
        json: { type: 'boolean' };
      };
      allowPositionals: true;
    }>
  >;
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        ...common,
        wait: { type: 'boolean' },
        'no-wait': { type: 'boolean' },
        json: { type: 'boolean' },
      },
      allowPositionals: true,
    });
  } catch (err) {
    // parseArgs' own text for this one is long, unbalanced and about positionals after `--`.
    const unknown = /^Unknown option '([^']+)'/.exec(errorMessage(err));
    const detail = unknown
      ? `unknown option ${JSON.stringify(unknown[1])} for hyp ${verb}`
      : errorMessage(err);
    throw new HypError('HYP_E_USAGE', { detail: `${detail}; see hyp ${verb} --help` });
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${help[verb]}\n`);
    return;
  }
  // A word or flag the verb does not take is a mistake, not something to ignore
  // (`hyp run a.js b.js`, `hyp restart --wait`, `hyp status --josn` is caught by parseArgs).
  const extra = positionals.slice(verb === 'run' ? 1 : 0);
  if (extra.length > 0)
    throw new HypError('HYP_E_USAGE', {
      detail: `unexpected argument ${JSON.stringify(extra[0])}; see hyp ${verb} --help`,
    });
  for (const [flag, owner] of [
    ['wait', 'drain'],
    ['no-wait', 'restart'],
    ['json', 'status'],
  ] as const) {
    if (values[flag] !== undefined && verb !== owner)
      throw new HypError('HYP_E_USAGE', {
        detail: `--${flag} is an option of hyp ${owner}, not of hyp ${verb}; see hyp ${verb} --help`,
      });
  }
  const loadOpts: LoadOptions = { file: values.config, sets: values.set ?? [] };

  switch (verb) {
    case 'run':
      return run(positionals[0], loadOpts);
    case 'version':
      process.stdout.write(
        `hyp ${JSON.parse(readFileSync(packageJson, 'utf8')).version} (node ${process.version})\n`,
      );
      return;
    case 'schema':
      process.stdout.write(`${JSON.stringify(jsonSchema(), null, 2)}\n`);
      return;
    case 'errors':
      for (const [code, entry] of Object.entries(catalog)) {
        const e = entry as { message: string; exit?: number; status?: number };
        const where = [e.exit !== undefined ? `exit ${e.exit}` : '', e.status ? `HTTP ${e.status}` : '']
          .filter(Boolean)
          .join(', ');
        process.stdout.write(`${code.padEnd(30)} ${where.padEnd(16)} ${e.message}\n`);
      }
      return;
    default:
      return remote(verb, values, loadOpts);
  }
}

async function run(appArg: string | undefined, loadOpts: LoadOptions): Promise<void> {
  // First of all: from here a signal no longer kills the pod with Node's default action.
  const early = new EarlySignals();
  const { config, warnings, file: startedFile } = loadConfig(loadOpts);
  // Unusable certificate or key files stop here (exit 2), before any socket or worker.
  checkTlsFiles(config);
  const appPath = resolveApp(appArg ?? config.app);
  const log = createLogger({ role: 'supervisor', level: config.log.level, format: config.log.format });
  early.log = log;
  guardIpcParsing(log);
  for (const w of warnings) log.warn(w);
  const sup = new Supervisor({
    config,
    app: appPath,
    log,
    // The file read at start, even if it was the implicit ./hyp.yaml: deleted
    // since, the reload is refused rather than silently falling back to defaults.
    reloadConfig: () => loadConfig({ ...loadOpts, file: loadOpts.file ?? startedFile }).config,
  });
  early.cleanup.push(() => {
    for (const l of sup.listeners) l.close();
  });
  await sup.bind();
  const admin = new AdminServer(sup, log);
  early.cleanup.push(() => void admin.close());
  try {
    const addr = await admin.listen(config.admin.addr);
    log.info({ port: addr.port }, 'admin server listening');
  } catch (err) {
    for (const l of sup.listeners) l.close();
    throw err;
  }
  sup.onStop.push(() => admin.close());
  sup.launch();
  early.handOver(sup);
  log.info(
    { app: appPath, workers: sup.workerCount, pid_file: config.supervisor.pid_file },
    'supervisor started',
  );
}

type EarlySignal = 'SIGHUP' | 'SIGUSR2' | 'SIGTERM' | 'SIGINT';

/**
 * Signals that reach `hyp run` before launch() installs the supervisor's
 * handlers (config load, listener and admin bind), where Node's default
 * action would end the pod. SIGHUP/SIGUSR2 are remembered: one rolling
 * restart (a SIGHUP one, re-reading the config, if any was SIGHUP) once
 * generation 1 is ready. SIGTERM/SIGINT end the start at once, exit 0:
 * what was bound is closed, no worker started, no PID file written (launch()
 * writes it, synchronously with installing the supervisor's handlers).
 */
class EarlySignals {
  log: Logger | undefined;
  /** Undo what the start has created so far (synchronous: the exit follows at once). */
  readonly cleanup: Array<() => void> = [];
  private roll: 'SIGHUP' | 'SIGUSR2' | undefined;
  private readonly handlers = new Map<EarlySignal, () => void>();

  constructor() {
    for (const signal of ['SIGHUP', 'SIGUSR2', 'SIGTERM', 'SIGINT'] as const) {
      const handler = () => this.received(signal);
      this.handlers.set(signal, handler);
      process.on(signal, handler);
    }
  }

  private say(signal: EarlySignal, what: string): void {
    const line = `${signal} before the supervisor launched: ${what}`;
    if (this.log) this.log.info({ signal }, line);
    else process.stderr.write(`hyp: ${line}\n`);
  }

  private received(signal: EarlySignal): void {
    if (signal === 'SIGTERM' || signal === 'SIGINT') {
      this.say(signal, 'exiting without starting workers');
      for (const undo of this.cleanup.reverse()) {
        try {
          undo();
        } catch {}
      }
      process.exit(0);
    }
    // SIGHUP re-reads the config and rolls: it covers a SIGUSR2 too.
    this.roll = this.roll === 'SIGHUP' ? 'SIGHUP' : signal;
    this.say(signal, 'one rolling restart once generation 1 is ready');
  }

  /**
   * launch() has installed the supervisor's handlers (so removing these
   * never leaves a signal to its default action): from now on they act.
   * A remembered roll runs once the pod is ready and no worker of
   * generation 1 is still starting, and is dropped if the pod drains first.
   */
  handOver(sup: Supervisor): void {
    for (const [signal, handler] of this.handlers) process.off(signal, handler);
    const signal = this.roll;
    if (!signal) return;
    const poll = setInterval(() => {
      if (sup.state === 'draining' || sup.state === 'stopped') {
        clearInterval(poll);
        this.log?.info({ signal }, `${signal} received before launch dropped: the pod is draining`);
        return;
      }
      if (sup.state !== 'ready' || sup.currentWorkers().some((w) => w.state === 'spawning')) return;
      clearInterval(poll);
      this.log?.info({ signal }, `rolling restart for the ${signal} received before launch`);
      void (signal === 'SIGHUP' ? sup.reload() : sup.rollGeneration(signal));
    }, 50);
    poll.unref();
  }
}

/** `app.ts` given: use the compiled sibling under dist/ when there is one. */
function resolveApp(arg: string): string {
  if (!arg)
    throw new HypError('HYP_E_USAGE', {
      detail: 'hyp run <app>: the app module path is missing (give it, or set the config key app)',
    });
  let file = resolve(arg);
  if (file.endsWith('.ts')) {
    const relativeCopy = distCandidates(process.cwd(), file).find((c) => existsSync(c));
    const compiled = relativeCopy ?? compiledCopy(file);
    if (compiled !== undefined) file = compiled;
    else if (existsSync(file) && !loadsTypeScript())
      // Every worker would fail to import it ("Unknown file extension"), restarted forever.
      throw new HypError('HYP_E_APP_NOT_FOUND', {
        file,
        detail: `a TypeScript module with no compiled copy (dist/…/${basename(file, '.ts')}.js) found, and Node ${process.version} cannot load .ts files: compile it first (npx tsc, or your build script) or run Node ≥ 22.18`,
      });
  }
  if (!existsSync(file)) throw new HypError('HYP_E_APP_NOT_FOUND', { file, detail: 'no such file' });
  // Every worker would fail to import it (ERR_UNSUPPORTED_DIR_IMPORT), restarted forever.
  if (!statSync(file).isFile())
    throw new HypError('HYP_E_APP_NOT_FOUND', {
      file,
      detail: 'not a file; give the module itself, such as dist/app.js',
    });
  return file;
}

/** Node strips or transforms TypeScript itself (22.18+, 23.6+; `process.features.typescript`). */
function loadsTypeScript(): boolean {
  return Boolean((process.features as { typescript?: unknown }).typescript);
}

/**
 * The `tsc` output of a `.ts` module: `<dir>/dist/<path from dir>.js` for
 * `dir` from the module's folder up to its package root (the nearest
 * package.json), so `hyp run /abs/path/app.ts` works from anywhere.
 */
function compiledCopy(file: string): string | undefined {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const candidate = distCandidates(dir, file).find((c) => existsSync(c));
    if (candidate !== undefined) return candidate;
    if (existsSync(join(dir, 'package.json')) || dirname(dir) === dir) return undefined;
  }
}

/**
 * Where tsc puts `file` when `dir` holds the tsconfig: `dist/<path>.js`
 * (no rootDir, as this repository builds), or `dist/<path below src/>.js`
 * for the common `rootDir: "src", outDir: "dist"` layout.
 */
function distCandidates(dir: string, file: string): string[] {
  const rel = relative(dir, file);
  if (rel.startsWith('..') || isAbsolute(rel)) return [];
  const out = [join(dir, 'dist', rel)];
  const [top, ...below] = rel.split(sep);
  if (top === 'src' && below.length > 0) out.push(join(dir, 'dist', ...below));
  return out.map((c) => c.replace(/\.ts$/, '.js'));
}

interface RemoteValues {
  admin?: string | undefined;
  wait?: boolean | undefined;
  'no-wait'?: boolean | undefined;
  json?: boolean | undefined;
}

function adminUrl(values: RemoteValues, config: Config | undefined): string {
  if (values.admin) {
    let url: URL | undefined;
    try {
      url = new URL(values.admin);
    } catch {}
    if (url?.protocol !== 'http:' || url.search !== '' || url.hash !== '')
      throw new HypError('HYP_E_USAGE', {
        detail: `--admin ${JSON.stringify(values.admin)}: expected an http:// URL such as http://127.0.0.1:9090`,
      });
    return values.admin.replace(/\/$/, '');
  }
  const parsed = parseAddress(config?.admin.addr ?? ':9090');
  let host = parsed?.host;
  if (!host || host === '0.0.0.0' || host === '::') host = '127.0.0.1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${parsed?.port ?? 9090}`;
}

interface AdminAnswer {
  status: number;
  body: Record<string, unknown>;
}

function call(method: string, url: string, timeoutMs = 10_000): Promise<AdminAnswer> {
  return new Promise((resolveCall, reject) => {
    const req = request(url, { method, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      // A connection lost mid-body: without this the call never settles and the CLI exits 0 silently.
      res.on('error', (err) =>
        reject(new HypError('HYP_E_ADMIN_REQUEST', { method, url, detail: `response ${errorMessage(err)}` })),
      );
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text);
        } catch {
          body = { text };
        }
        resolveCall({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) =>
      reject(new HypError('HYP_E_ADMIN_REQUEST', { method, url, detail: errorMessage(err) })),
    );
    req.end();
  });
}

async function remote(verb: string, values: RemoteValues, loadOpts: LoadOptions): Promise<void> {
  let config: Config | undefined;
  try {
    config = loadConfig(loadOpts).config;
  } catch (err) {
    // With --admin the config is not needed, but a bad --set or --config given here is still an error.
    if (!values.admin || loadOpts.file !== undefined || (loadOpts.sets?.length ?? 0) > 0) throw err;
  }
  if (config && !values.admin) {
    const pidFile = config.supervisor.pid_file;
    const pid = readPidFile(pidFile);
    if (pid === undefined) throw new HypError('HYP_E_NOT_RUNNING', { detail: `no PID file at ${pidFile}` });
    if (!isAlive(pid))
      throw new HypError('HYP_E_NOT_RUNNING', { detail: `PID file ${pidFile} names dead process ${pid}` });
  }
  const base = adminUrl(values, config);
  switch (verb) {
    case 'health': {
      const health = await call('GET', `${base}/health`);
      const ready = await call('GET', `${base}/ready`);
      process.stdout.write(`health: ${health.status === 200 ? 'ok' : `failing (${health.status})`}\n`);
      process.stdout.write(
        `ready:  ${ready.status === 200 ? 'yes' : `no (${String(ready.body.reason ?? ready.status)})`}\n`,
      );
      if (health.status !== 200) process.exit(1);
      return;
    }
    case 'status': {
      const { body } = await call('GET', `${base}/status`);
      if (values.json) return void process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      process.stdout.write(formatStatus(body));
      return;
    }
    case 'restart': {
      const answer = await call('POST', `${base}/restart${values['no-wait'] ? '' : '?wait=1'}`, 600_000);
      if (answer.status === 202) return void process.stdout.write('restart accepted\n');
      if (answer.body.ok === false && answer.body.code === 'HYP_E_GENERATION_FAILED') {
        // The roll ran and failed (the old generation serves on): the catalog's error, not a request failure.
        throw new HypError('HYP_E_GENERATION_FAILED', {
          generation: Number(answer.body.generation) + 1,
          detail: String(answer.body.error),
        });
      }
      if (answer.status !== 200 || answer.body.ok !== true) {
        const detail = String(
          answer.body.error && typeof answer.body.error === 'object'
            ? (answer.body.error as { message?: string }).message
            : (answer.body.error ?? answer.status),
        );
        throw new HypError('HYP_E_ADMIN_REQUEST', { method: 'POST', url: `${base}/restart`, detail });
      }
      process.stdout.write(`generation ${String(answer.body.generation)} serving\n`);
      return;
    }
    case 'drain': {
      const answer = await call('POST', `${base}/drain`);
      if (answer.status !== 202) {
        throw new HypError('HYP_E_ADMIN_REQUEST', {
          method: 'POST',
          url: `${base}/drain`,
          detail: `HTTP ${answer.status}`,
        });
      }
      process.stdout.write('drain started\n');
      if (values.wait) await waitDrained(base);
      return;
    }
    default:
      throw new HypError('HYP_E_USAGE', { detail: `unknown command "${verb}"` });
  }
}

/**
 * Poll GET /drain until the supervisor has served through drain.delay and is
 * draining its workers (or is gone). That is what a Kubernetes preStop hook
 * needs: the kubelet's SIGTERM that follows joins the running drain, and the
 * hook does not outlive the container (which would be a FailedPreStopHook).
 */
async function waitDrained(base: string): Promise<void> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    let answer: AdminAnswer;
    try {
      answer = await call('GET', `${base}/drain`, 2000);
    } catch {
      process.stdout.write('drained\n');
      return;
    }
    const phase = answer.body.phase;
    if (phase === 'done' || answer.body.state === 'stopped') {
      process.stdout.write('drained\n');
      return;
    }
    if (phase === 'workers' || phase === 'closing') {
      process.stdout.write('workers draining\n');
      return;
    }
  }
}

function formatStatus(body: Record<string, unknown>): string {
  const workers = (body.workers ?? []) as Array<Record<string, number | string>>;
  const header = ['ID', 'PID', 'STATE', 'GEN', 'UPTIME', 'CONNS', 'INFLIGHT', 'RSS'];
  const rows = workers.map((w) => [
    String(w.id),
    String(w.pid),
    String(w.state),
    String(w.generation),
    `${w.uptime_s}s`,
    String(w.connections),
    String(w.inflight),
    `${Math.round(Number(w.rss_bytes) / 1048576)}MiB`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`;
  let out = `state: ${String(body.state)}  generation: ${String(body.generation)}  ready: ${String(body.ready)}  pid: ${String(body.pid)}\n`;
  if (body.problem) out += `problem: ${String(body.problem)}\n`;
  out += line(header);
  for (const r of rows) out += line(r);
  return out;
}

main(process.argv.slice(2)).catch(fail);
