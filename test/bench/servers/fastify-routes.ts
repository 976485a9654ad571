/**
 * The bench's two routes as a Fastify user writes them (synchronous handlers,
 * as hyp's routes are; no response schema, as hyp has none), and the listen
 * step every bench server shares: an ephemeral loopback port, printed as
 * `listening <port>`.
 */
import type { FastifyInstance } from 'fastify';

export async function serveHelloRoutes(app: FastifyInstance): Promise<void> {
  app.get('/', (_req, reply) => {
    reply.type('text/plain; charset=utf-8').send('hello world');
  });
  app.get('/json', (_req, reply) => {
    reply.send({ hello: 'world' });
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`listening ${new URL(address).port}\n`);
}
