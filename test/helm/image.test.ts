/**
 * The container image as Kubernetes runs it, read from the Dockerfile (no
 * Docker needed): the user the kubelet sees, PID 1, the writable paths.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helm.js';

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** The instructions of the Dockerfile's last stage (continuation lines joined, comments dropped). */
function finalStage(text: string): Instruction[] {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: Instruction[][] = [];
  for (const line of lines) {
    const [keyword = '', ...rest] = line.split(/\s+/);
    const instruction = { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    if (instruction.keyword === 'FROM') stages.push([]);
    stages.at(-1)?.push(instruction);
  }
  return stages.at(-1) ?? [];
}

/**
 * Why the kubelet's runAsNonRoot check (kuberuntime verifyRunAsNonRoot) would
 * refuse to start the container, or undefined: with no runAsUser it must prove
 * from the image that the user is not root, which it can only do for a UID.
 */
function kubeletRefusal(
  imageUser: string,
  securityContext: { runAsNonRoot: boolean; runAsUser?: number },
): string | undefined {
  if (!securityContext.runAsNonRoot) return undefined;
  if (securityContext.runAsUser !== undefined)
    return securityContext.runAsUser === 0 ? 'runAsUser is 0' : undefined;
  const uid = imageUser.split(':')[0] || 'root';
  if (!/^\d+$/.test(uid))
    return `container has runAsNonRoot and image has non-numeric user (${uid}), cannot verify user is non-root`;
  return Number(uid) === 0 ? 'container has runAsNonRoot and image will run as root' : undefined;
}

describe('Dockerfile', () => {
  const stage = finalStage(readFileSync(join(repoRoot, 'Dockerfile'), 'utf8'));
  const last = (keyword: string) => stage.filter((i) => i.keyword === keyword).at(-1)?.args ?? '';

  it('starts under runAsNonRoot without a runAsUser (restricted Pod Security, plain manifests, kubectl run)', () => {
    expect(kubeletRefusal(last('USER'), { runAsNonRoot: true })).toBeUndefined();
  });
});
