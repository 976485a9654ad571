/**
 * A local stand-in for the Kubernetes API server's EndpointSlice endpoints
 * (discovery.k8s.io/v1): HTTPS with a certificate from a test CA, a bearer
 * token required, list and watch answered with the API's own JSON shapes
 * (EndpointSliceList, watch events as JSON lines, Status on refusal), and a
 * kubeconfig file pointing at it. Tests change the pod's endpoint and every
 * open watch sees a MODIFIED event.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makePki } from '../apps/server/tls/certs.js';

export interface StubEndpoint {
  pod: string;
  ready: boolean;
}

export interface StubRequest {
  path: string;
  watch: boolean;
  labelSelector: string | null;
  authorization: string | undefined;
}

export interface ApiStub {
  /** A kubeconfig file naming the stub, its CA and its token (current context: namespace `web`). */
  kubeconfig: string;
  token: string;
  requests: StubRequest[];
  /** Watches open now. */
  readonly watches: number;
  /** Set the endpoints of the one slice of service `web`; open watches get a MODIFIED event. */
  setEndpoints(endpoints: StubEndpoint[]): void;
  /** Answer every request with this status (403: RBAC missing) instead of serving. */
  refuseWith(status: number | undefined): void;
  /** End every open watch (as an API server restart does). */
  dropWatches(): void;
  close(): Promise<void>;
}

const namespace = 'web';
const service = 'web';
const slicesPath = `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`;

function slice(endpoints: StubEndpoint[], resourceVersion: number): object {
  return {
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    metadata: {
      name: `${service}-x7k2p`,
      generateName: `${service}-`,
      namespace,
      uid: '6b1f5a4e-2c1d-4c55-9d0e-3f4c1c0d9a11',
      resourceVersion: String(resourceVersion),
      generation: resourceVersion,
      creationTimestamp: '2026-11-23T00:00:00Z',
      labels: {
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        'kubernetes.io/service-name': service,
      },
      ownerReferences: [
        {
          apiVersion: 'v1',
          kind: 'Service',
          name: service,
          uid: '0a3c1c0e-8a77-4b2e-9a51-55d2d3c0f001',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    addressType: 'IPv4',
    endpoints: endpoints.map((e, i) => ({
      addresses: [`10.244.0.${10 + i}`],
      conditions: { ready: e.ready, serving: e.ready, terminating: !e.ready },
      targetRef: { kind: 'Pod', namespace, name: e.pod, uid: `pod-uid-${i}` },
      nodeName: 'node-1',
      zone: 'zone-a',
    })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' }],
  };
}

function status(code: number): object {
  const reason = code === 401 ? 'Unauthorized' : code === 403 ? 'Forbidden' : 'InternalError';
  const message =
    code === 403
      ? `endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:${namespace}:rel-hyp" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "${namespace}"`
      : reason;
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    details: { group: 'discovery.k8s.io', kind: 'endpointslices' },
    code,
  };
}

export async function startApiStub(initial: StubEndpoint[]): Promise<ApiStub> {
  const pki = makePki();
  const token = randomBytes(16).toString('hex');
  let endpoints = initial;
  let resourceVersion = 100;
  let refusal: number | undefined;
  const requests: StubRequest[] = [];
  const open = new Set<ServerResponse>();

  const server: Server = createServer(
    { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) },
    (req, res) => {
      const url = new URL(req.url ?? '/', 'https://stub');
      const watch = url.searchParams.get('watch') === 'true';
      requests.push({
        path: url.pathname,
        watch,
        labelSelector: url.searchParams.get('labelSelector'),
        authorization: req.headers.authorization,
      });
      const json = (code: number, body: object) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization !== `Bearer ${token}`) return json(401, status(401));
      if (refusal !== undefined) return json(refusal, status(refusal));
      if (req.method !== 'GET' || url.pathname !== slicesPath) return json(404, status(404));
      const selected = url.searchParams.get('labelSelector') === `kubernetes.io/service-name=${service}`;
      if (!watch) {
        return json(200, {
          kind: 'EndpointSliceList',
          apiVersion: 'discovery.k8s.io/v1',
          metadata: { resourceVersion: String(resourceVersion) },
          items: selected ? [slice(endpoints, resourceVersion)] : [],
        });
      }
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      if (!selected) return;
      open.add(res);
      res.on('close', () => open.delete(res));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const kubeconfig = join(pki.dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '  - name: stub',
      '    cluster:',
      `      server: https://127.0.0.1:${port}`,
      `      certificate-authority: ${pki.caCert}`,
      'users:',
      '  - name: hyp',
      '    user:',
      `      token: ${token}`,
      'contexts:',
      '  - name: stub',
      '    context: {cluster: stub, user: hyp, namespace: web}',
      'current-context: stub',
      '',
    ].join('\n'),
  );

  return {
    kubeconfig,
    token,
    requests,
    get watches() {
      return open.size;
    },
    setEndpoints(next) {
      endpoints = next;
      resourceVersion++;
      const event = `${JSON.stringify({ type: 'MODIFIED', object: slice(endpoints, resourceVersion) })}\n`;
      for (const res of open) res.write(event);
    },
    refuseWith(code) {
      refusal = code;
    },
    dropWatches() {
      for (const res of open) res.destroy();
    },
    close() {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
