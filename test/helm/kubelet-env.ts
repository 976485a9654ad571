/**
 * The environment the kubelet gives a container, as far as the chart decides
 * it: the container's `env` (plain values; `valueFrom` resolved by the caller)
 * and, unless the pod sets `enableServiceLinks: false`, the Docker-links style
 * variables of every Service in the pod's namespace
 * (kubernetes/pkg/kubelet/envvars/envvars.go).
 */
import type { PodSpec, ServiceShape } from './render.js';

const envName = (name: string) => name.toUpperCase().replace(/-/g, '_');

/** `<NAME>_SERVICE_HOST`, `<NAME>_PORT_<port>_TCP_ADDR`, ... for each Service with a cluster IP. */
export function serviceLinkEnv(
  services: readonly ServiceShape[],
  clusterIP = '10.96.0.10',
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const svc of services) {
    if (svc.spec.clusterIP === 'None') continue; // headless: no variables
    const ip = svc.spec.clusterIP ?? clusterIP;
    const name = envName(svc.metadata.name);
    const [first] = svc.spec.ports;
    if (!first) continue;
    env[`${name}_SERVICE_HOST`] = ip;
    env[`${name}_SERVICE_PORT`] = String(first.port);
    for (const p of svc.spec.ports)
      if (p.name) env[`${name}_SERVICE_PORT_${envName(p.name)}`] = String(p.port);
    for (const [i, p] of svc.spec.ports.entries()) {
      const proto = (p.protocol ?? 'TCP').toLowerCase();
      const url = `${proto}://${ip}:${p.port}`;
      if (i === 0) env[`${name}_PORT`] = url;
      const prefix = `${name}_PORT_${p.port}_${proto.toUpperCase()}`;
      env[prefix] = url;
      env[`${prefix}_PROTO`] = proto;
      env[`${prefix}_PORT`] = String(p.port);
      env[`${prefix}_ADDR`] = ip;
    }
  }
  return env;
}

/** The hyp container's environment in a namespace holding `services`. */
export function containerEnv(pod: PodSpec, services: readonly ServiceShape[]): NodeJS.ProcessEnv {
  const links = pod.enableServiceLinks === false ? {} : serviceLinkEnv(services);
  const own: NodeJS.ProcessEnv = {};
  for (const e of pod.containers[0]!.env) own[e.name] = e.value ?? `valueFrom:${JSON.stringify(e.valueFrom)}`;
  // the container's own variables win over the service links
  return { ...links, ...own };
}
