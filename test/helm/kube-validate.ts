/**
 * Checks a rendered Kubernetes object twice:
 *  1. `new Kind(obj).validate()` from kubernetes-models (types, required
 *     fields, formats — but unknown fields pass);
 *  2. a strict walk that refuses any field the Kubernetes API does not define,
 *     as `kubectl apply --validate=strict` would. The field lists come from
 *     the OpenAPI-generated models of @kubernetes/client-node
 *     (`attributeTypeMap` of each class).
 * Custom resources (ServiceMonitor, PodMonitor) get check 1 only, from
 * @kubernetes-models/prometheus-operator.
 */
import { PodMonitor, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; [key: string]: unknown };
  [key: string]: unknown;
}

interface Validatable {
  validate(): void;
}

interface Kind {
  readonly model: new (data: never) => Validatable;
  /** @kubernetes/client-node class holding the field list; none for CRDs. */
  readonly clientClass?: string;
}

const kinds: Record<string, Kind> = {
  'v1/ConfigMap': { model: ConfigMap, clientClass: 'V1ConfigMap' },
  'v1/Service': { model: Service, clientClass: 'V1Service' },
  'v1/ServiceAccount': { model: ServiceAccount, clientClass: 'V1ServiceAccount' },
  'apps/v1/Deployment': { model: Deployment, clientClass: 'V1Deployment' },
  'autoscaling/v2/HorizontalPodAutoscaler': {
    model: HorizontalPodAutoscaler,
    clientClass: 'V2HorizontalPodAutoscaler',
  },
  'networking.k8s.io/v1/Ingress': { model: Ingress, clientClass: 'V1Ingress' },
  'networking.k8s.io/v1/NetworkPolicy': { model: NetworkPolicy, clientClass: 'V1NetworkPolicy' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, clientClass: 'V1PodDisruptionBudget' },
  'rbac.authorization.k8s.io/v1/Role': { model: Role, clientClass: 'V1Role' },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: RoleBinding, clientClass: 'V1RoleBinding' },
  'monitoring.coreos.com/v1/ServiceMonitor': { model: ServiceMonitor },
  'monitoring.coreos.com/v1/PodMonitor': { model: PodMonitor },
};

interface Attribute {
  readonly baseName: string;
  readonly type: string;
}
interface GeneratedModel {
  getAttributeTypeMap(): readonly Attribute[];
}

const fieldCache = new Map<string, Map<string, string> | null>();

/** Field name → type name of a client-node model, or null for a non-model type. */
async function fieldsOf(type: string): Promise<Map<string, string> | null> {
  if (fieldCache.has(type)) return fieldCache.get(type) ?? null;
  let fields: Map<string, string> | null = null;
  if (/^[A-Z][A-Za-z0-9]*$/.test(type) && type !== 'IntOrString' && type !== 'Date') {
    const module = (await import(`@kubernetes/client-node/dist/gen/models/${type}.js`)) as Record<
      string,
      GeneratedModel
    >;
    const model = module[type];
    if (!model) throw new Error(`@kubernetes/client-node has no model ${type}`);
    fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  }
  fieldCache.set(type, fields);
  return fields;
}

async function unknownFields(value: unknown, type: string, path: string, out: string[]): Promise<void> {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value))
      for (const [i, item] of value.entries()) await unknownFields(item, array[1], `${path}[${i}]`, out);
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') {
      for (const [key, item] of Object.entries(value))
        await unknownFields(item, map[1], `${path}.${key}`, out);
    }
    return;
  }
  const fields = await fieldsOf(type);
  if (!fields || typeof value !== 'object' || Array.isArray(value)) return;
  for (const [key, item] of Object.entries(value)) {
    const fieldType = fields.get(key);
    if (fieldType === undefined) out.push(`${path}.${key}`);
    else await unknownFields(item, fieldType, `${path}.${key}`, out);
  }
}

/** Every problem with `obj`, as readable lines; empty when it is valid. */
export async function validateObject(obj: KubeObject): Promise<string[]> {
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const kind = kinds[`${obj.apiVersion}/${obj.kind}`];
  if (!kind) return [`${id}: no validator for ${obj.apiVersion} ${obj.kind}`];
  const problems: string[] = [];
  try {
    new kind.model(obj as never).validate();
  } catch (err) {
    problems.push(`${id}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (kind.clientClass) {
    const unknown: string[] = [];
    await unknownFields(obj, kind.clientClass, '', unknown);
    for (const field of unknown) problems.push(`${id}: unknown field ${field.slice(1)}`);
  }
  return problems;
}

export const validatedKinds: readonly string[] = Object.keys(kinds);
