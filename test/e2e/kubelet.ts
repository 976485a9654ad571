/**
 * Plays the kubelet and the endpoints controller for pods that are Docker
 * containers, following the rendered Deployment: start a container with the
 * pod's image, args, env, ports, config volume and security settings; probe
 * readiness with the spec's period and thresholds; a ready pod joins the
 * Service after `propagationMs`; termination removes it from the Service after
 * `propagationMs` while, at the same moment, the preStop hook runs and then
 * SIGTERM is sent with what is left of the grace period (SIGKILL after it).
 */
import { docker, exitState, publishedPort, run } from './docker.js';
import type { HaproxyService } from './haproxy.js';

export interface ProbeSpec {
  readonly path: string;
  readonly port: number;
  readonly periodSeconds: number;
  readonly timeoutSeconds: number;
  readonly successThreshold: number;
  readonly failureThreshold: number;
}

export interface PodSpec {
  readonly image: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly httpPort: number;
  readonly adminPort: number;
  readonly readiness: ProbeSpec;
  readonly preStop: readonly string[] | null;
  readonly graceSeconds: number;
  /** Host directory mounted read-only where the ConfigMap would be. */
  readonly configDir: string;
  readonly configMountPath: string;
  readonly runAsUser: number;
  /** User-defined Docker network the pod joins (its "cluster network": reaches Redis by name). */
  readonly network?: string;
}

export interface Termination {
  readonly pod: string;
  readonly exitCode: number;
  readonly sigkilled: boolean;
  readonly preStopExit: number | null;
  readonly ms: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Kubelet {
  private seq = 0;
  readonly created: string[] = [];

  constructor(
    private readonly spec: PodSpec,
    private readonly lb: HaproxyService,
    private readonly propagationMs: number,
    private readonly namePrefix: string,
  ) {}

  /** Start a pod; resolves once it is in the Service's endpoints. */
  async startPod(): Promise<string> {
    const name = `${this.namePrefix}-${++this.seq}`;
    const env = Object.entries({ ...this.spec.env, POD_NAME: name, POD_NAMESPACE: 'e2e' }).flatMap(
      ([k, v]) => ['-e', `${k}=${v}`],
    );
    this.created.push(name);
    await docker([
      'run',
      '-d',
      '--name',
      name,
      '--read-only',
      '--tmpfs',
      '/tmp:rw,mode=1777,size=64m',
      '--user',
      `${this.spec.runAsUser}:${this.spec.runAsUser}`,
      '--cap-drop',
      'ALL',
      '--security-opt',
      'no-new-privileges',
      ...(this.spec.network ? ['--network', this.spec.network] : []),
      '-v',
      `${this.spec.configDir}:${this.spec.configMountPath}:ro`,
      '-p',
      `127.0.0.1::${this.spec.httpPort}`,
      '-p',
      `127.0.0.1::${this.spec.adminPort}`,
      ...env,
      this.spec.image,
      ...this.spec.args,
    ]);
    const adminPort = await publishedPort(name, this.spec.readiness.port);
    await this.waitReady(name, adminPort);
    const httpPort = await publishedPort(name, this.spec.httpPort);
    await sleep(this.propagationMs);
    await this.lb.addEndpoint(name, httpPort);
    return name;
  }

  private async probe(port: number): Promise<boolean> {
    const r = this.spec.readiness;
    try {
      const res = await fetch(`http://127.0.0.1:${port}${r.path}`, {
        signal: AbortSignal.timeout(r.timeoutSeconds * 1000),
      });
      await res.arrayBuffer();
      return res.status >= 200 && res.status < 400;
    } catch {
      return false;
    }
  }

  /** successThreshold consecutive passes, one probe per periodSeconds; bounded. */
  private async waitReady(name: string, port: number): Promise<void> {
    const r = this.spec.readiness;
    let passes = 0;
    for (let attempt = 0; attempt < 120; attempt++) {
      await sleep(r.periodSeconds * 1000);
      passes = (await this.probe(port)) ? passes + 1 : 0;
      if (passes >= r.successThreshold) return;
      const state = await exitState(name);
      if (!state.running) {
        const logs = await run('docker', ['logs', '--tail', '30', name]);
        throw new Error(
          `${name} exited with ${state.exitCode} before it was ready:\n${logs.stdout}${logs.stderr}`,
        );
      }
    }
    throw new Error(`${name} never became ready`);
  }

  /** Delete a pod as the API server would on a rollout. */
  async terminate(name: string): Promise<Termination> {
    const started = Date.now();
    const endpointRemoval = sleep(this.propagationMs).then(() => this.lb.removeEndpoint(name));
    let preStopExit: number | null = null;
    if (this.spec.preStop) {
      const hook = await run('docker', ['exec', name, ...this.spec.preStop], {
        timeoutMs: this.spec.graceSeconds * 1000,
      });
      preStopExit = hook.code;
    }
    // The kubelet gives SIGTERM what is left of the grace period, at least 2 s.
    const left = Math.max(2, Math.ceil(this.spec.graceSeconds - (Date.now() - started) / 1000));
    const stillRunning = (await exitState(name)).running;
    if (stillRunning) await docker(['stop', '-t', String(left), name], (left + 30) * 1000);
    await endpointRemoval;
    const state = await exitState(name);
    return {
      pod: name,
      exitCode: state.exitCode,
      sigkilled: state.exitCode === 137,
      preStopExit,
      ms: Date.now() - started,
    };
  }

  async removeAll(): Promise<void> {
    for (const name of this.created) await run('docker', ['rm', '-f', name]);
  }
}
