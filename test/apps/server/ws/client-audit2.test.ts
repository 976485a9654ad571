import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HypWebSocket } from '../../../../apps/client/index.js';
import { eventually, type Served, serveHub } from './helpers.js';

let served: Served | undefined;
const open: HypWebSocket[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of open.splice(0)) c.close();
  await served?.close();
  served = undefined;
});

const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };

function client(url: string, options: ConstructorParameters<typeof HypWebSocket>[1] = {}): HypWebSocket {
  const c = new HypWebSocket(url, { reconnect: { initialDelayMs: 20, maxDelayMs: 200 }, ...options });
  open.push(c);
  return c;
}

describe('HypWebSocket against a hub with a replay guard', () => {
  it('a publish queued while disconnected longer than the window is delivered after the reconnect', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    served = await serveHub({ security: { keys, replayWindowMs: 1_000 } });
    const listener = client(served.url, { security: keys });
    const got: string[] = [];
    listener.subscribe('q', (m) => got.push(m.json<string>()));
    await listener.connect();
    await eventually(() => served!.hub.subscribers('q') === 1);
    const c = client(served.url, { clientId: 'queuer', security: keys });
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.code));
    await c.connect();
    const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
    served.hub.client('queuer')!.ws.terminate();
    await closed;
    c.publish('q', 'while away');
    // away for 5 s: five windows
    vi.setSystemTime(Date.now() + 5_000);
    const reopened = new Promise<void>((resolve) => c.on('open', () => resolve()));
    await reopened;
    c.publish('q', 'after');
    await eventually(() => got.length === 2 || errors.length > 0);
    expect(errors).toEqual([]);
    expect(got).toEqual(['while away', 'after']);
  });
});
