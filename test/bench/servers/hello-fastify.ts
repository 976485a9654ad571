/**
 * Baseline: Fastify with the same two routes. Synchronous handlers, as the
 * hyp routes are (an `async` handler costs Fastify a promise per request,
 * about 2–3 % here), and no response schema, as hyp has none.
 * Prints `listening <port>`.
 */
import Fastify from 'fastify';
import { serveHelloRoutes } from './fastify-routes.js';

await serveHelloRoutes(Fastify({ logger: false }));
