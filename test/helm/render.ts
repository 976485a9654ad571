/**
 * Rendering the chart for tests: `helm template` into parsed objects, the
 * shapes the tests read, and the rendered hyp.yaml loaded by hyp's own loader.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { type LoadedConfig, loadConfig } from '../../supervisor/config/load.js';
import { chartDir, type HelmResult, runHelm } from './helm.js';
import type { KubeObject } from './kube-validate.js';

export const monitoringApi: readonly string[] = ['--api-versions', 'monitoring.coreos.com/v1'];

export function parseManifest(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw doc.errors[0];
      return doc.toJS() as KubeObject | null;
    })
    .filter((obj): obj is KubeObject => obj !== null);
}

export function find(objects: KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!found) throw new Error(`no ${kind}${name ? ` ${name}` : ''} rendered`);
  return found;
}

export interface Probe {
  httpGet?: { path: string; port: string | number };
  periodSeconds?: number;
}
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: Record<string, unknown>;
}
export interface Container {
  name: string;
  args: string[];
  ports: { name: string; containerPort: number; protocol?: string }[];
  startupProbe: Probe;
  livenessProbe: Probe;
  readinessProbe: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  securityContext: Record<string, unknown>;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  env: EnvVar[];
}
export interface PodSpec {
  terminationGracePeriodSeconds: number;
  enableServiceLinks?: boolean;
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: {
    name: string;
    emptyDir?: object;
    configMap?: { name: string };
    secret?: { secretName: string };
  }[];
}
export interface DeploymentShape {
  spec: {
    strategy: { type: string; rollingUpdate: { maxUnavailable: number | string; maxSurge: number | string } };
    template: { metadata: { annotations: Record<string, string> }; spec: PodSpec };
  };
}
export interface ServiceShape {
  metadata: { name: string };
  spec: {
    clusterIP?: string;
    ports: {
      name: string;
      port: number;
      targetPort: string | number;
      protocol: string;
      appProtocol?: string;
    }[];
  };
}

export function deploymentOf(objects: KubeObject[]): DeploymentShape {
  return find(objects, 'Deployment') as unknown as DeploymentShape;
}

export function hypYaml(objects: KubeObject[]): string {
  return (find(objects, 'ConfigMap') as unknown as { data: Record<string, string> }).data['hyp.yaml'];
}

export interface Rendered extends HelmResult {
  /** The parsed objects; empty when helm failed. */
  readonly objects: KubeObject[];
}

/** `helm template <release> helm/hyp --namespace web <args>`. */
export async function template(helm: string, args: readonly string[], release = 'rel'): Promise<Rendered> {
  const result = await runHelm(helm, ['template', release, chartDir, '--namespace', 'web', ...args]);
  return { ...result, objects: result.code === 0 ? parseManifest(result.stdout) : [] };
}

const tempDirs: string[] = [];

/** Write `text` as hyp.yaml in a fresh temporary directory; see removeTempFiles. */
export function writeTemp(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-chart-'));
  tempDirs.push(dir);
  const path = join(dir, 'hyp.yaml');
  writeFileSync(path, text);
  return path;
}

/** For afterAll: remove what writeTemp wrote. */
export function removeTempFiles(): void {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** The rendered ConfigMap's hyp.yaml as hyp loads it in the pod, with `env` as the process environment. */
export function loadRendered(objects: KubeObject[], env: NodeJS.ProcessEnv = {}): LoadedConfig {
  return loadConfig({ file: writeTemp(hypYaml(objects)), env });
}
