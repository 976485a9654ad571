/**
 * Reference (not a target baseline): Fastify with the two routes AND what
 * hyp does on every request, written the way a Fastify user adds them —
 * the request id taken from `x-request-id` or generated (`genReqId`) and
 * sent back, and a prom-client duration histogram labelled by method,
 * route pattern and status, observed in `onResponse` (what fastify-metrics
 * does). Prints `listening <port>`.
 */
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { Histogram, Registry } from 'prom-client';
import { serveHelloRoutes } from './fastify-routes.js';

const registry = new Registry();
const duration = new Histogram({
  name: 'http_request_duration_seconds',
  help: 'request duration',
  labelNames: ['method', 'route', 'status'],
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

const prefix = `${randomBytes(6).toString('base64url').slice(0, 6)}-`;
let counter = 0;
const app = Fastify({
  logger: false,
  requestIdHeader: 'x-request-id',
  genReqId: () => prefix + (++counter).toString(36),
});
app.addHook('onRequest', (request, reply, done) => {
  reply.header('x-request-id', request.id);
  done();
});
app.addHook('onResponse', (request, reply, done) => {
  duration
    .labels(request.method, request.routeOptions.url ?? '(not found)', String(reply.statusCode))
    .observe(reply.elapsedTime / 1000);
  done();
});
await serveHelloRoutes(app);
