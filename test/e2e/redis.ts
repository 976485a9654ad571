/**
 * The Redis the pods share (the WebSocket hub's `bus.driver: redis`: pub/sub
 * fan-out and Redis Streams history), with the user-defined Docker network
 * that plays the cluster network: pods reach it by container name, and it
 * publishes no port at all — the harness itself never talks to it.
 *
 * The image is built from test/e2e/redis.Dockerfile on the locally
 * bootstrapped base (no registry is reachable).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { docker, exitState, run } from './docker.js';

export const redisImage = 'hyp-e2e-redis';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Builds the Redis image (Docker's layer cache makes a rebuild instant). */
export async function buildRedisImage(dockerfile: string): Promise<void> {
  const context = mkdtempSync(join(tmpdir(), 'hyp-e2e-redis-')); // the Dockerfile needs no files
  try {
    const build = await run('docker', ['build', '-q', '-t', redisImage, '-f', dockerfile, context], {
      timeoutMs: 900_000,
      env: { ...process.env, DOCKER_BUILDKIT: '0' },
    });
    if (build.code !== 0) throw new Error(`docker build ${redisImage} failed:\n${build.stderr.slice(-4000)}`);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

export class ClusterRedis {
  private constructor(
    readonly network: string,
    readonly container: string,
  ) {}

  /** URL for the pods (inside the network). */
  get url(): string {
    return `redis://${this.container}:6379`;
  }

  static async start(name: string): Promise<ClusterRedis> {
    const network = `${name}-net`;
    const container = `${name}-redis`;
    await docker(['network', 'create', network]);
    const redis = new ClusterRedis(network, container);
    try {
      await docker(['run', '-d', '--name', container, '--network', network, '--read-only', redisImage]);
      for (let i = 0; i < 100; i++) {
        const ping = await run('docker', ['exec', container, 'redis-cli', 'ping']);
        if (ping.stdout.trim() === 'PONG') return redis;
        if (!(await exitState(container)).running) break;
        await sleep(100);
      }
      const logs = await run('docker', ['logs', '--tail', '20', container]);
      throw new Error(`redis never answered PING:\n${logs.stdout}${logs.stderr}`);
    } catch (err) {
      await redis.stop();
      throw err;
    }
  }

  /** `redis-server --version` inside the container. */
  async version(): Promise<string> {
    return docker(['exec', this.container, 'redis-server', '--version']);
  }

  async stop(): Promise<void> {
    await run('docker', ['rm', '-f', this.container]);
    await run('docker', ['network', 'rm', this.network]);
  }
}
