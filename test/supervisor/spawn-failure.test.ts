/**
 * A worker whose process cannot be created (fd limit, pid limit, an
 * oversized environment) is a failed start the supervisor sees end, like
 * any other: Node emits no 'exit' for a failed spawn (only 'error' and
 * 'close'), and throws for some errors. Before, the supervisor waited on
 * such a worker forever (its slot never restarted, a pod drain never ended)
 * or, for a thrown error in a restart timer, crashed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from '../helpers/supervisor.js';

const script = join(root, 'dist', 'test', 'fixtures', 'spawn-failure.js');

function run(mode: string, ulimit = ''): Record<string, unknown> {
  const shell = `${ulimit ? `ulimit -n ${ulimit} && ` : ''}exec "${process.execPath}" "${script}" ${mode}`;
  const r = spawnSync('bash', ['-c', shell], { encoding: 'utf8', timeout: 30_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  expect(line, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBeDefined();
  return JSON.parse(line!) as Record<string, unknown>;
}

describe('a worker process that cannot be spawned', () => {
  it('no free fd (EMFILE): the worker ends as a failed start naming the error', () => {
    const result = run('emfile', '256');
    expect(result).toMatchObject({ outcome: 'exited', state: 'exited' });
    const exit = result.exit as Record<string, unknown>;
    expect(exit.startError).toMatch(/^HYP_E_WORKER_SPAWN: .*EMFILE/);
    expect(exit.wasState).toBe('spawning');
  });

  it('an error Node throws from spawn (E2BIG): the same, never a throw', () => {
    const result = run('e2big');
    expect(result).toMatchObject({ outcome: 'exited', state: 'exited' });
    expect((result.exit as Record<string, unknown>).startError).toMatch(/^HYP_E_WORKER_SPAWN: .*E2BIG/);
  });
});
