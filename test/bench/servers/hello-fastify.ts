/** Baseline: Fastify with the same two routes. Prints `listening <port>`. */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/', async (_req, reply) => reply.type('text/plain; charset=utf-8').send('hello world'));
app.get('/json', async () => ({ hello: 'world' }));
const address = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`listening ${new URL(address).port}\n`);
