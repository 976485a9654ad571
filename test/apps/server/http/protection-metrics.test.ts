/**
 * The HTTP listener's protections show in the worker's registry: connections
 * dropped at `server.limits.max_connections` in
 * `hyp_http_connections_refused_total{reason}` (with a rate-limited warning),
 * requests and sessions refused for what the peer sent in
 * `hyp_http_client_errors_total{protocol,code}`. A peer that resets its
 * connection and a request served normally count nothing. They used to be
 * logged at debug (client errors) or not at all (max_connections drops).
 *
 * An HttpServer on real loopback sockets (harness `serve`), and one case
 * through a real supervisor's aggregated /metrics.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../../../helpers/supervisor.js';
import { closedBy, get1, h2Frame, rawConnect, type Served, serve } from './harness.js';

let served: Served | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await served?.close();
  served = undefined;
});

/** Every sample of a counter family in the registry, as `{labels} value` keyed by its labels in text. */
async function samples(name: string): Promise<Map<string, number>> {
  const metric = served!.registry.getSingleMetric(name);
  const out = new Map<string, number>();
  if (!metric) return out;
  for (const v of (await metric.get()).values) {
    const labels = Object.entries(v.labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, l]) => `${k}=${l}`)
      .join(',');
    out.set(labels, v.value);
  }
  return out;
}

/** The client errors counted, non-zero only. */
async function clientErrors(): Promise<Record<string, number>> {
  const counted: Record<string, number> = {};
  for (const [labels, value] of await samples('hyp_http_client_errors_total'))
    if (value > 0) counted[labels] = value;
  return counted;
}

async function open(port: number): Promise<Socket> {
  const s = await rawConnect(port);
  sockets.push(s);
  return s;
}

const h2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

describe('hyp_http_connections_refused_total{reason="max_connections"}', () => {
  it('is served at 0 before any refusal', async () => {
    served = await serve(['server.limits.max_connections=2']);
    expect(await samples('hyp_http_connections_refused_total')).toEqual(
      new Map([['reason=max_connections', 0]]),
    );
  });

  it('counts a connection over max_connections and warns once, naming the setting', async () => {
    served = await serve(['server.limits.max_connections=2']);
    const port = served.port;
    await open(port);
    await open(port);
    await until(() => served!.http.connections === 2, 'two connections held');
    const third = await open(port);
    // Node closes it at accept: the peer sees the close, no byte.
    expect((await closedBy(third)).length).toBe(0);
    await until(
      async () => (await samples('hyp_http_connections_refused_total')).get('reason=max_connections') === 1,
      'the refusal counted',
    );
    const fourth = await open(port);
    await closedBy(fourth);
    await until(
      async () => (await samples('hyp_http_connections_refused_total')).get('reason=max_connections') === 2,
      'the second refusal counted',
    );
    // Rate-limited: one warning for both (within 10 s of each other).
    const warnings = served.logs.filter((l) => l.level === 40 && l.reason === 'max_connections');
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatchObject({ dropped: 1, max_connections: 2 });
    expect(warnings[0]!.msg).toContain('server.limits.max_connections');
    // Neither is a client error.
    expect(await clientErrors()).toEqual({});
  });
});

describe('hyp_http_client_errors_total{protocol,code}', () => {
  it('HTTP/1.1 headers that never finish (slowloris): 408, counted as HYP_E_REQUEST_TIMEOUT', async () => {
    served = await serve(['server.limits.headers_timeout=300ms']);
    const socket = await open(served.port);
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n');
    expect((await closedBy(socket)).toString('latin1')).toMatch(/^HTTP\/1\.1 408/);
    await until(async () => Object.keys(await clientErrors()).length > 0, 'the refusal counted');
    expect(await clientErrors()).toEqual({ 'code=HYP_E_REQUEST_TIMEOUT,protocol=http1': 1 });
  });

  it('an HTTP/1.1 header over max_header_size: 431, counted as HYP_E_HEADERS_TOO_LARGE', async () => {
    served = await serve(['server.limits.max_header_size=1KiB']);
    expect((await get1(served.port, '/', { 'x-big': 'a'.repeat(2048) })).status).toBe(431);
    await until(async () => Object.keys(await clientErrors()).length > 0, 'the refusal counted');
    expect(await clientErrors()).toEqual({ 'code=HYP_E_HEADERS_TOO_LARGE,protocol=http1': 1 });
  });

  it('a request line that is not HTTP: 400, counted as HYP_E_BAD_REQUEST', async () => {
    served = await serve([]);
    const socket = await open(served.port);
    socket.write('hello there\r\n\r\n');
    expect((await closedBy(socket)).toString('latin1')).toMatch(/^HTTP\/1\.1 400/);
    await until(async () => Object.keys(await clientErrors()).length > 0, 'the refusal counted');
    expect(await clientErrors()).toEqual({ 'code=HYP_E_BAD_REQUEST,protocol=http1': 1 });
  });

  it('an h2c peer sending bytes that are no frame after the preface: counted as http2 HYP_E_BAD_REQUEST', async () => {
    served = await serve(['server.protocol=auto']);
    const socket = await open(served.port);
    socket.write(Buffer.concat([h2Preface, h2Frame(4, 0, 0), Buffer.alloc(20, 0xff)]));
    await closedBy(socket);
    await until(async () => Object.keys(await clientErrors()).length > 0, 'the session error counted');
    const counted = await clientErrors();
    expect(Object.keys(counted)).toEqual(['code=HYP_E_BAD_REQUEST,protocol=http2']);
    expect(counted['code=HYP_E_BAD_REQUEST,protocol=http2']).toBeGreaterThanOrEqual(1);
  });

  it('peers that reset their connection (HTTP/1.1 mid-headers, h2c after the preface): nothing counted', async () => {
    served = await serve(['server.protocol=auto']);
    const http1 = await open(served.port);
    http1.write('GET / HTTP/1.1\r\nhost: x\r\n');
    const h2 = await open(served.port);
    const serverSettings = new Promise((r) => h2.once('data', r));
    h2.write(Buffer.concat([h2Preface, h2Frame(4, 0, 0)]));
    await serverSettings;
    await until(() => served!.http.connections === 2, 'both connections held');
    http1.resetAndDestroy();
    h2.resetAndDestroy();
    await until(() => served!.http.connections === 0, 'both connections gone on the server');
    expect(await clientErrors()).toEqual({});
  });

  it('requests served normally (HTTP/1.1 and h2c): nothing counted', async () => {
    served = await serve(['server.protocol=auto', 'server.limits.max_connections=4']);
    expect((await get1(served.port)).status).toBe(200);
    const socket = await open(served.port);
    socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect((await closedBy(socket)).toString('latin1')).toMatch(/^HTTP\/1\.1 200/);
    await until(() => served!.http.connections === 0, 'connections closed');
    expect(await clientErrors()).toEqual({});
    expect(await samples('hyp_http_connections_refused_total')).toEqual(
      new Map([['reason=max_connections', 0]]),
    );
  });
});

describe('through the supervisor', () => {
  let sup: Running | undefined;
  afterEach(async () => {
    await sup?.stop();
    sup = undefined;
  });

  it("the workers' counters are in the aggregated /metrics", async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1 });
    const before = await (await sup.admin('/metrics')).text();
    expect(before).toMatch(/^hyp_http_connections_refused_total\{reason="max_connections"\} 0$/m);
    const socket = await open(sup.httpPort);
    socket.write('hello there\r\n\r\n');
    expect((await closedBy(socket)).toString('latin1')).toMatch(/^HTTP\/1\.1 400/);
    const text = await until(async () => {
      const t = await (await sup!.admin('/metrics')).text();
      return /^hyp_http_client_errors_total\{[^}]*\} 1$/m.test(t) ? t : undefined;
    }, 'the client error in /metrics');
    const line = text.split('\n').find((l) => l.startsWith('hyp_http_client_errors_total{'))!;
    expect(line).toContain('protocol="http1"');
    expect(line).toContain('code="HYP_E_BAD_REQUEST"');
    expect(text).toContain(
      '# HELP hyp_http_client_errors_total HTTP/1.1 requests refused by the parser or its timeouts',
    );
  });
});
