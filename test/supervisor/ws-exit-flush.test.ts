/**
 * A worker that drains and exits sends what it had queued on its IPC channel
 * first. Node drops the messages a process still has queued on its IPC
 * channel when it exits (500 messages of 64 KiB sent right before
 * `process.exit()`: 2–4 reach the parent), so publishes a draining worker
 * had taken — a client's frame that crossed the drain's close frame, the
 * app's own publishes in onShutdown — were lost whenever the channel was
 * backed up at the end. Real supervisor, workers and clients.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';
import { greetedPid, TestClient } from './ws-helpers.js';

let sup: Running | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await sup?.stop();
  sup = undefined;
});

async function connected(port: number, clientId: string): Promise<{ client: TestClient; pid: number }> {
  const client = new TestClient(port, { clientId });
  clients.push(client);
  await client.connect();
  return { client, pid: await until(() => greetedPid(client), 'the greeting') };
}

describe('a draining worker flushes its IPC channel before it exits', () => {
  it('300 publishes of 64 KiB the app makes at drain all reach a subscriber on the other worker', async () => {
    const burst = 300;
    sup = await startSupervisor({
      app: fixtureApp('ws-shutdown-burst'),
      workers: 2,
      env: { BURST_N: String(burst) },
    });
    const s = sup;
    const first = await connected(s.httpPort, 'trigger');
    let subscriber: TestClient | undefined;
    for (let i = 0; i < 40 && subscriber === undefined; i++) {
      const other = await connected(s.httpPort, `listener-${i}`);
      if (other.pid !== first.pid) subscriber = other.client;
    }
    expect(subscriber).toBeDefined();
    await subscriber!.subscribe('burst');
    // an uncaught exception in the trigger's worker: the supervisor replaces it, then drains it
    first.client.ws.publish('crash', {});
    await s.waitLog(
      (l) => l.msg === 'worker exited' && l.worker_pid === first.pid,
      'the crashed worker exits',
      30_000,
    );
    const fromDrained = () => subscriber!.ids('burst').filter((id) => id.startsWith(`${first.pid}-`));
    await until(
      () => (fromDrained().length >= burst ? true : undefined),
      `${burst} burst messages`,
      20_000,
    ).catch(() => undefined);
    expect(fromDrained()).toEqual(Array.from({ length: burst }, (_, i) => `${first.pid}-${i}`));
  });
});
