/** Baseline: raw node:http with the same two routes. Prints `listening <port>`. */
import { createServer } from 'node:http';

const body = 'hello world';
const server = createServer((req, res) => {
  if (req.url === '/json') {
    const json = JSON.stringify({ hello: 'world' });
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
