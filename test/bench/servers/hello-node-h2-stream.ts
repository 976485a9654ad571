/**
 * Reference: raw node:http2 on its core stream API (`stream.respond` +
 * `stream.end`), the fastest a hand-written Node HTTP/2 handler gets; the
 * compat-API server beside it is what most handlers are written against.
 * Prints `listening <port>`.
 */
import { createServer } from 'node:http2';

const body = 'hello world';
const json = JSON.stringify({ hello: 'world' });
const server = createServer();
server.on('stream', (stream, headers) => {
  const isJson = headers[':path'] === '/json';
  const payload = isJson ? json : body;
  stream.respond({
    ':status': 200,
    'content-type': isJson ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
  });
  stream.end(payload);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
