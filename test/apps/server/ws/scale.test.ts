import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { eventually, type Served, serveHub, TestClient } from './helpers.js';

/**
 * Load specs: bounded in count and time; figures are printed, never asserted
 * as limits (the machine is shared).
 */
describe('hub at scale', () => {
  let served: Served | undefined;
  const sockets: WebSocket[] = [];
  afterAll(async () => {
    for (const ws of sockets) ws.terminate();
    await served?.close();
  });

  it('holds 5,000 idle connections on one hub and reports the memory per connection', async () => {
    served = await serveHub();
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const before = process.memoryUsage();
    const total = 5_000;
    for (let i = 0; i < total; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          const ws = new WebSocket(served!.url, { perMessageDeflate: false });
          ws.on('error', () => {});
          sockets.push(ws);
          await new Promise<void>((resolve, reject) => {
            ws.once('open', () => resolve());
            ws.once('error', reject);
          });
        }),
      );
    }
    await eventually(() => served!.hub.clients() === total, 30_000);
    gc?.();
    const after = process.memoryUsage();
    const perConn = (after.heapUsed + after.external - before.heapUsed - before.external) / total;
    // both ends live in this process: the figure is an upper bound for the server side
    console.log(
      `5,000 idle connections: ${(perConn / 1024).toFixed(1)} KiB heap+external per connection (client + server ends)`,
    );
    expect(served.hub.clients()).toBe(total);
    served.hub.broadcast('still alive');
    let received = 0;
    for (const ws of sockets) ws.once('message', () => received++);
    await eventually(() => received === total, 30_000);
  }, 120_000);

  it('a reader that never reads is cut off while the server keeps at most the send-buffer bound for it', async () => {
    const local = await serveHub({ sendBufferLimit: 512 * 1024 });
    const slow = await TestClient.connect(local.url, 'msgpack', { headers: { 'X-Client-ID': 'slow' } });
    slow.subscribe('flood');
    await slow.nextOf('subscribed');
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const server = local.hub.client('slow')!;
    let maxBuffered = 0;
    const chunk = { blob: 'y'.repeat(16 * 1024) };
    for (let i = 0; i < 5_000 && local.hub.clients() > 0; i++) {
      local.hub.publish('flood', chunk);
      maxBuffered = Math.max(maxBuffered, server.ws.bufferedAmount);
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    await eventually(() => local.hub.clients() === 0);
    expect(maxBuffered).toBeLessThanOrEqual(512 * 1024 + 16 * 1024 + 64);
    console.log(`slow reader cut off; server buffered at most ${(maxBuffered / 1024).toFixed(0)} KiB for it`);
    await local.close();
  });
});
