/**
 * One OpenTelemetry server span per request, through `@opentelemetry/api`
 * only: the application (or its `--import` preload) registers the SDK. The
 * parent comes from W3C `traceparent`/`tracestate` (or from the globally
 * registered propagator, when there is one). Without a registered tracer
 * provider hyp starts no span at all, so tracing costs nothing when off.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import {
  type Context as OtelContext,
  ProxyTracerProvider,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapPropagator,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { methodLabel } from './metrics.js';

type Request = IncomingMessage | Http2ServerRequest;

const tracerName = 'hyp.http';

/**
 * Longest attribute value taken from what the client sends (user-agent,
 * path, host, an unknown method): longer ones are cut. The SDK keeps every
 * attribute of every span it batches, and headers may be 16 KB each.
 */
export const maxAttributeLength = 1024;

function clip(value: string): string {
  return value.length > maxAttributeLength ? value.slice(0, maxAttributeLength) : value;
}
const w3c = new W3CTraceContextPropagator();

export class HttpTracing {
  private tracer: Tracer | undefined;
  private propagator: TextMapPropagator = w3c;

  constructor(private readonly configured?: Tracer) {}

  /**
   * Look up the tracer and propagator (called when the app compiles its
   * routes, i.e. before the first request). Register the SDK before that.
   */
  resolve(): void {
    this.tracer = this.configured ?? registeredTracer();
    this.propagator = propagation.fields().length > 0 ? propagationApi : w3c;
  }

  get enabled(): boolean {
    return this.tracer !== undefined;
  }

  /**
   * Start the server span; returns it with the context (parent + span) to
   * run the handler in. `clientAddress`: the client behind trusted proxies
   * (`c.clientIp`), when known; the socket's peer is then
   * `network.peer.address`, as the conventions have it. `scheme`: the
   * client's (`c.protocol`, a trusted proxy's `X-Forwarded-Proto`), else
   * the socket's.
   */
  start(
    req: Request,
    method: string,
    path: string,
    route: string | undefined,
    clientAddress?: string,
    scheme?: 'http' | 'https',
  ): { span: Span; context: OtelContext } {
    // Without a traceparent the W3C propagator has nothing to extract; other propagators might.
    const parent =
      this.propagator === w3c && req.headers.traceparent === undefined
        ? ROOT_CONTEXT
        : this.propagator.extract(ROOT_CONTEXT, req.headers, getter);
    const socket = req.socket;
    const host = (req.headers.host ?? req.headers[':authority']) as string | undefined;
    // Span names and the method attribute stay bounded: unknown methods are
    // `_OTHER`, and their spans are named `HTTP` (the semantic conventions' MUST).
    const label = methodLabel(method);
    const named = label === '_OTHER' ? 'HTTP' : label;
    const span = this.tracer!.startSpan(
      route === undefined ? named : `${named} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': label,
          ...(label === method ? {} : { 'http.request.method_original': clip(method) }),
          'url.path': clip(path),
          'url.scheme':
            scheme ?? ((socket as { encrypted?: boolean } | undefined)?.encrypted ? 'https' : 'http'),
          // Node says '2.0' for HTTP/2; the conventions' value is '2'.
          'network.protocol.version': req.httpVersionMajor === 2 ? '2' : req.httpVersion,
          ...(route === undefined ? {} : { 'http.route': route }),
          ...serverAddress(host),
          ...clientAttributes(socket?.remoteAddress, clientAddress),
          ...(req.headers['user-agent'] ? { 'user_agent.original': clip(req.headers['user-agent']) } : {}),
        },
      },
      parent,
    );
    return { span, context: trace.setSpan(parent, span) };
  }

  /** Close the span with the response status (5xx marks it as an error); `undefined`: none went out. */
  end(span: Span, status: number | undefined, aborted: boolean): void {
    if (status !== undefined) span.setAttribute('http.response.status_code', status);
    if (status !== undefined && status >= 500) {
      span.setAttribute('error.type', String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    } else if (aborted) {
      span.setAttribute('error.type', 'aborted');
    }
    span.end();
  }
}

/** The tracer of a registered SDK, or `undefined` when only the API's no-op is there. */
function registeredTracer(): Tracer | undefined {
  const provider = trace.getTracerProvider();
  if (provider instanceof ProxyTracerProvider) return provider.getDelegateTracer(tracerName);
  return provider.getTracer(tracerName);
}

const getter = {
  keys: (carrier: Request['headers']) => Object.keys(carrier),
  get: (carrier: Request['headers'], key: string) => carrier[key],
};

const propagationApi: TextMapPropagator = {
  inject: (ctx, carrier, setter) => propagation.inject(ctx, carrier, setter),
  extract: (ctx, carrier, getter) => propagation.extract(ctx, carrier, getter),
  fields: () => propagation.fields(),
};

function serverAddress(host: string | undefined): Record<string, string | number> {
  if (!host) return {};
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  if (!m) return {};
  const address = clip(m[1]!);
  // The Host header is the client's word: a "port" past 65535 is no port.
  const port = m[2] === undefined || m[2].length > 5 ? Number.NaN : Number(m[2]);
  return port <= 65535 ? { 'server.address': address, 'server.port': port } : { 'server.address': address };
}

/** `client.address` is the original client; a proxy in between is the `network.peer.address`. */
function clientAttributes(peer: string | undefined, client: string | undefined): Record<string, string> {
  if (!client || client === peer) return peer ? { 'client.address': peer } : {};
  return peer ? { 'client.address': client, 'network.peer.address': peer } : { 'client.address': client };
}
