/**
 * Is this pod still in its Service's endpoints? The supervisor watches the
 * Service's EndpointSlices (discovery.k8s.io/v1, label
 * `kubernetes.io/service-name=<service>`) through `@kubernetes/client-node`'s
 * ListWatch (one list, then a watch from its resourceVersion; the library
 * re-lists on 410 Gone and reconnects after a server-side close), so a pod
 * drain can stop serving once the pod has left them instead of always
 * waiting the whole drain.delay.
 *
 * The pod has left when no endpoint in any slice of the Service names it
 * (`targetRef` kind Pod, name `pod`), or all that do have
 * `conditions.ready === false` (a terminating pod is kept in the slices,
 * not ready). A pod never seen in the slices since the watch began has not
 * "left": a wrong service or pod name must not cut the drain to `settle`.
 *
 * Nothing here throws or exits: an API problem (no cluster, a bad
 * kubeconfig, 401/403, unreachable) is one HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE
 * warning per distinct cause, and the state is "unknown" until a list and
 * watch succeed again (retried with backoff). The client is imported only
 * when a service is set: it is large (about 90 MB of RSS once loaded) and
 * most supervisors never need it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type { Config } from './config/schema.js';
import { errorMessage, HypError } from './errors.js';
import type { Logger } from './log.js';

/** Where a pod's service account files are mounted (the API client reads the same paths). */
const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';
/** Retry delays after an API failure: doubled from the first to the last, then kept. */
const retryFirstMs = 1000;
const retryMaxMs = 30_000;

export interface EndpointsTarget {
  service: string;
  namespace: string;
  pod: string;
}

/** Where the pod stands, as far as the watch knows. */
export type EndpointsView =
  | { state: 'unknown'; cause: string }
  | { state: 'listed' }
  | { state: 'left'; at: number }
  | { state: 'never-listed' };

type Env = NodeJS.ProcessEnv;

/**
 * Service, namespace and pod from `drain.endpoints` and the pod's
 * environment. `problem` says why no watch can start (no namespace).
 */
export function endpointsTarget(
  config: Config['drain']['endpoints'],
  env: Env = process.env,
  saDir = serviceAccountDir,
): { target: EndpointsTarget; problem?: string } {
  let namespace = config.namespace;
  if (namespace === '') {
    const file = `${saDir}/namespace`;
    namespace = existsSync(file) ? readFileSync(file, 'utf8').trim() : (env.POD_NAMESPACE ?? '');
  }
  const target = { service: config.service, namespace, pod: config.pod || env.POD_NAME || hostname() };
  if (namespace !== '') return { target };
  return {
    target,
    problem: `no namespace: drain.endpoints.namespace is empty, there is no ${saDir}/namespace and POD_NAMESPACE is not set`,
  };
}

interface SliceEndpoint {
  conditions?: { ready?: boolean | null };
  targetRef?: { kind?: string; name?: string };
}
interface Slice {
  endpoints?: SliceEndpoint[] | null;
}
interface ListWatchLike {
  start(): Promise<void>;
  stop(): Promise<void>;
  list(namespace?: string): Slice[];
  on(verb: string, cb: (arg?: unknown) => void): void;
}

export class EndpointsWatch {
  /** The pod has a ready (or not yet ready-flagged) endpoint in the Service's slices now. */
  private listed = false;
  /** The pod was in some slice (ready or not) since the watch began. */
  private seen = false;
  private leftAt: number | undefined;
  /** Why the state is not known now; undefined once a list and watch succeeded. */
  private cause: string | undefined = 'the first list of the EndpointSlices has not answered yet';
  private readonly warned = new Set<string>();
  private informer: ListWatchLike | undefined;
  /** A fresh ListWatch: each attempt lists anew, so a recovered watch is known to be current. */
  private newInformer: (() => ListWatchLike) | undefined;
  private retryMs = retryFirstMs;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly target: EndpointsTarget,
    private readonly log: Logger,
    private readonly env: Env = process.env,
  ) {}

  /** Where the pod stands now. */
  view(): EndpointsView {
    if (this.cause !== undefined) return { state: 'unknown', cause: this.cause };
    if (this.listed) return { state: 'listed' };
    if (!this.seen) return { state: 'never-listed' };
    return { state: 'left', at: this.leftAt ?? Date.now() };
  }

  /** Resolves at the next change of the view (or at stop). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  /** Load the client and the credentials, then list and watch; failures are warnings, never thrown. */
  async start(): Promise<void> {
    try {
      await this.connect();
    } catch (err) {
      this.fail(describeFailure(err, this.target));
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    void this.informer?.stop().catch(() => {});
    this.notify();
  }

  /** A failure that is not the API's: reported like one, and no watch starts. */
  failWithout(cause: string): void {
    this.fail(cause);
  }

  private async connect(): Promise<void> {
    const { namespace, service } = this.target;
    const kubeconfigFiles = this.env.KUBECONFIG ?? '';
    if (kubeconfigFiles === '' && !this.env.KUBERNETES_SERVICE_HOST)
      return this.fail(
        'not in a cluster (KUBERNETES_SERVICE_HOST is not set) and no KUBECONFIG names a kubeconfig file',
      );
    if (kubeconfigFiles === '' && !existsSync(`${serviceAccountDir}/token`))
      return this.fail(
        `no service account token at ${serviceAccountDir}/token (automountServiceAccountToken is false?)`,
      );
    let k8s: typeof import('@kubernetes/client-node');
    try {
      requireUndici();
    } catch (err) {
      return this.fail(
        `the Kubernetes client's undici cannot load on Node ${process.versions.node} (undici 8 needs Node 22.19 or later; give your project the override the README names): ${errorMessage(err)}`,
      );
    }
    try {
      k8s = await import('@kubernetes/client-node');
    } catch (err) {
      return this.fail(`the Kubernetes client (@kubernetes/client-node) cannot load: ${errorMessage(err)}`);
    }
    if (this.stopped) return;
    const kc = new k8s.KubeConfig();
    // KUBECONFIG (outside a cluster, tests) wins; otherwise the pod's service account. Never ~/.kube/config.
    try {
      if (kubeconfigFiles !== '') kc.loadFromDefault();
      else kc.loadFromCluster();
    } catch (err) {
      return this.fail(`KUBECONFIG ${kubeconfigFiles} cannot be used: ${errorMessage(err)}`);
    }
    if (!kc.getCurrentCluster()) return this.fail(`KUBECONFIG ${kubeconfigFiles} has no current cluster`);
    const api = kc.makeApiClient(k8s.DiscoveryV1Api);
    const labelSelector = `kubernetes.io/service-name=${service}`;
    const watch = new k8s.Watch(kc);
    this.newInformer = () => {
      const informer = new k8s.ListWatch(
        `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
        watch,
        async () => {
          const list = await api.listNamespacedEndpointSlice({ namespace, labelSelector });
          // ListWatch stores the items right after this resolves: look once it has.
          setImmediate(() => {
            if (this.informer === informer) this.synced();
          });
          return list;
        },
        false,
        labelSelector,
      ) as unknown as ListWatchLike;
      for (const verb of ['add', 'update', 'delete'])
        informer.on(verb, () => {
          if (this.informer === informer) this.recompute();
        });
      informer.on('error', (err) => {
        if (this.informer === informer) this.onError(err);
      });
      return informer;
    };
    await this.run();
  }

  /**
   * One list + watch attempt, with a new ListWatch (the one that failed has
   * stopped); its failure comes through the informer's error callback.
   */
  private async run(): Promise<void> {
    if (!this.newInformer || this.stopped) return;
    void this.informer?.stop().catch(() => {});
    const informer = this.newInformer();
    this.informer = informer;
    try {
      await informer.start();
    } catch (err) {
      if (this.informer === informer) this.onError(err);
    }
  }

  private synced(): void {
    if (this.stopped) return;
    const was = this.cause;
    this.cause = undefined;
    this.retryMs = retryFirstMs;
    if (this.warned.size > 0 && was !== undefined) {
      this.log.info({ service: this.target.service }, 'EndpointSlices of the service readable again');
      // the next outage is worth a warning of its own
      this.warned.clear();
    }
    this.recompute();
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    const cause = describeFailure(err, this.target);
    if (this.cause === undefined) {
      // A watch that was current broke (an API server restart, a proxy
      // closing the connection): unknown until the retry lists again, and a
      // warning only if that fails too.
      this.cause = cause;
      this.log.debug({ service: this.target.service, cause }, 'EndpointSlices watch broke; listing again');
      this.notify();
    } else this.fail(cause);
    this.retryTimer = setTimeout(() => void this.run(), this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, retryMaxMs);
  }

  private fail(cause: string): void {
    this.cause = cause;
    if (!this.warned.has(cause)) {
      this.warned.add(cause);
      const err = new HypError('HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE', {
        service: this.target.service,
        cause,
      });
      this.log.warn(
        { code: err.code, service: this.target.service, namespace: this.target.namespace },
        err.message,
      );
    } else {
      this.log.debug({ service: this.target.service, cause }, 'EndpointSlices still not readable');
    }
    this.notify();
  }

  private recompute(): void {
    if (this.stopped || this.cause !== undefined || !this.informer) return;
    let present = false;
    let ready = false;
    for (const slice of this.informer.list(this.target.namespace))
      for (const e of slice.endpoints ?? []) {
        if (e.targetRef?.kind !== 'Pod' || e.targetRef.name !== this.target.pod) continue;
        present = true;
        if (e.conditions?.ready !== false) ready = true;
      }
    if (present) this.seen = true;
    this.listed = ready;
    if (ready) this.leftAt = undefined;
    else if (this.seen) this.leftAt ??= Date.now();
    this.notify();
  }

  private notify(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiting) resolve();
  }
}

/** An API failure in words an operator acts on. */
function describeFailure(err: unknown, target: EndpointsTarget): string {
  const e = err as { code?: unknown; statusCode?: unknown; cause?: { code?: unknown; message?: string } };
  const status = typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : 0;
  const what = `endpointslices (discovery.k8s.io) in namespace ${target.namespace}`;
  if (status === 401) return `401 Unauthorized: the API server refused the pod's credentials for ${what}`;
  if (status === 403)
    return `403 Forbidden: RBAC does not let the pod's service account list and watch ${what} (grant get, list, watch; the chart's rbac.create does)`;
  if (status === 404)
    return `404 Not Found: the API server does not serve ${what} (Kubernetes 1.21 or later needed)`;
  if (status > 0) return `the API server answered ${status} to the list or watch of ${what}`;
  const detail = String(e?.cause?.code ?? e?.cause?.message ?? errorMessage(err));
  if (/CERT|TLS|SSL/.test(detail))
    return `TLS to the API server failed (${detail}): check the kubeconfig's or the service account's CA`;
  return `the API server is unreachable or refused the connection (${detail})`;
}

/**
 * Loads the client's undici (CommonJS) on its own first. On Node 20 a
 * CommonJS module that throws while an ES module graph imports it fails
 * that import and also comes back as an unhandled rejection nobody can
 * catch, which ends the supervisor. undici 8 throws so on Node < 22.19, and
 * a project that installs hyp gets it: `@kubernetes/client-node` 2 asks for
 * it, and hyp's `overrides` apply only in this repository. Required here, it
 * throws once, to the caller; loaded, the import below takes it from the
 * require cache.
 */
function requireUndici(): void {
  createRequire(import.meta.resolve('@kubernetes/client-node'))('undici');
}
