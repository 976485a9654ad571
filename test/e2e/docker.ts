/** The few Docker CLI calls the rollout harness needs (a container is a pod). */
import { execFile } from 'node:child_process';

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      [...args],
      { maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 600_000, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
  });
}

export async function docker(args: readonly string[], timeoutMs?: number): Promise<string> {
  const result = await run('docker', args, { timeoutMs });
  if (result.code !== 0)
    throw new Error(`docker ${args.join(' ')}: exit ${result.code}: ${result.stderr.trim()}`);
  return result.stdout.trim();
}

/** Host side of a port published on 127.0.0.1. */
export async function publishedPort(container: string, containerPort: number): Promise<number> {
  const out = await docker(['port', container, `${containerPort}/tcp`]);
  const line = out.split('\n').find((l) => l.startsWith('127.0.0.1:'));
  if (!line) throw new Error(`${container}: port ${containerPort} is not published on 127.0.0.1 (${out})`);
  return Number(line.slice('127.0.0.1:'.length));
}

export interface ExitState {
  readonly exitCode: number;
  readonly oomKilled: boolean;
  readonly running: boolean;
}

export async function exitState(container: string): Promise<ExitState> {
  const out = await docker([
    'inspect',
    '-f',
    '{{.State.ExitCode}} {{.State.OOMKilled}} {{.State.Running}}',
    container,
  ]);
  const [code, oom, running] = out.split(' ');
  return { exitCode: Number(code), oomKilled: oom === 'true', running: running === 'true' };
}
