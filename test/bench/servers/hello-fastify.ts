/**
 * Baseline: Fastify with the same two routes. Synchronous handlers, as the
 * hyp routes are (an `async` handler costs Fastify a promise per request,
 * about 2–3 % here), and no response schema, as hyp has none.
 * Prints `listening <port>`.
 */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/', (_req, reply) => {
  reply.type('text/plain; charset=utf-8').send('hello world');
});
app.get('/json', (_req, reply) => {
  reply.send({ hello: 'world' });
});
const address = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`listening ${new URL(address).port}\n`);
