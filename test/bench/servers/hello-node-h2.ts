/** Baseline: raw node:http2 (h2c, prior knowledge) with the same two routes. Prints `listening <port>`. */
import { createServer } from 'node:http2';

const body = 'hello world';
const json = JSON.stringify({ hello: 'world' });
const server = createServer((req, res) => {
  if (req.url === '/json') {
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(json),
    });
    res.end(json);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
