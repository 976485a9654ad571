/**
 * HTTP/1.1 connection tracking: in-flight counts stay exact when clients
 * abort, and a keep-alive socket is idle only when nothing is arriving.
 */
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionTracker } from '../../../../apps/server/http/connections.js';

const servers: Array<{ close: () => void }> = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const tracker = new ConnectionTracker();
  const server = createServer(tracker.track(handler));
  tracker.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  servers.push({ close: () => server.close() });
  return { tracker, port: (server.address() as { port: number }).port };
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe('ConnectionTracker', () => {
  it('counts in-flight requests and returns to 0 when a client aborts mid-request', async () => {
    const { tracker, port } = await serve(() => {
      /* never answers */
    });
    const req = request({ port, host: '127.0.0.1', path: '/' });
    req.on('error', () => {});
    req.end();
    await until(() => tracker.inflight === 1);
    expect(tracker.inflight).toBe(1);
    expect(tracker.connections).toBe(1);
    req.destroy();
    await until(() => tracker.connections === 0);
    await new Promise((r) => setTimeout(r, 20));
    expect(tracker.connections).toBe(0);
    expect(tracker.inflight).toBe(0);
  });

  it('during drain, a keep-alive socket with a partial request is not ended; its request gets Connection: close', async () => {
    const { tracker, port } = await serve((_req, res) => res.end('ok'));
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d) => {
      answer += d;
    });
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => answer.includes('ok'));
    answer = '';
    socket.write('GET / HTT'); // the next request is arriving
    await new Promise((r) => setTimeout(r, 50));
    tracker.startDrain(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(socket.destroyed).toBe(false);
    socket.write('P/1.1\r\nHost: x\r\n\r\n');
    await until(() => answer.includes('ok'));
    expect(answer.toLowerCase()).toContain('connection: close');
    await until(() => tracker.connections === 0);
    expect(tracker.connections).toBe(0);
    tracker.stop();
    socket.destroy();
  });
});
