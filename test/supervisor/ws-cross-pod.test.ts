/**
 * Fan-out across pods: two supervisors share a real redis-server (started
 * here on a random loopback port) with `websocket.bus.driver=redis`; channel
 * publishes go through Redis Streams, delivered once on every pod.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { redisBinary } from '../apps/server/ws/redis-server.js';
import { demoApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';
import { exactlyOnce, type RedisServer, startRedis, TestClient } from './ws-helpers.js';

const redisPath = redisBinary();
if (!redisPath) console.warn('ws-cross-pod: redis-server is not installed; the cross-pod test is skipped');

const pods: Running[] = [];
const clients: TestClient[] = [];
let redis: RedisServer | undefined;
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(pods.splice(0).map((p) => p.stop()));
  await redis?.stop();
  redis = undefined;
});

describe('WebSocket fan-out across pods (redis driver)', () => {
  it.skipIf(!redisPath)(
    'every message published on either pod reaches every subscriber on both pods exactly once',
    async () => {
      redis = await startRedis(redisPath!);
      const sets = [
        'tcp.echo.addr=127.0.0.1:0',
        'websocket.bus.driver=redis',
        `websocket.bus.redis_url=${redis.url}`,
      ];
      pods.push(
        ...(await Promise.all([
          startSupervisor({ app: demoApp, workers: 2, sets }),
          startSupervisor({ app: demoApp, workers: 2, sets }),
        ])),
      );
      for (const [p, pod] of pods.entries()) {
        for (let i = 0; i < 3; i++) {
          const c = new TestClient(pod.httpPort, { clientId: `pod${p}-${i}` });
          clients.push(c);
          await c.connect();
          await c.subscribe('global');
        }
      }
      const perClient = 40;
      const expected: string[] = [];
      for (let n = 0; n < perClient; n++) {
        for (const [i, c] of clients.entries()) {
          const id = `${i}:${n}`;
          expected.push(id);
          c.ws.publish('global', { id });
        }
      }
      await until(
        () => (clients.every((c) => c.ids('global').length >= expected.length) ? true : undefined),
        'every delivery on both pods',
        30_000,
      );
      await new Promise((r) => setTimeout(r, 300));
      const orders = new Set<string>();
      for (const c of clients) {
        expect(exactlyOnce(c.ids('global'), expected)).toEqual({ missing: 0, duplicated: 0, unexpected: 0 });
        expect(c.errors).toEqual([]);
        orders.add(c.messages.map((m) => m.offset).join(','));
      }
      // one stream per channel: the same offsets in the same order on every pod
      expect(orders.size).toBe(1);

      // a client of pod 0 goes offline, messages are published on pod 1, it comes back on pod 1
      const mover = clients[0]!;
      const publisher = clients[clients.length - 1]!;
      mover.goOffline();
      await until(() => (mover.ws.connected ? undefined : true), 'mover offline');
      const missed = Array.from({ length: 20 }, (_, n) => `missed:${n}`);
      for (const id of missed) publisher.ws.publish('global', { id });
      await until(
        () => (publisher.ids('global').length >= expected.length + missed.length ? true : undefined),
        'publisher echo',
      );
      mover.goOnline(pods[1]!.httpPort);
      await until(
        () => (mover.ids('global').length >= expected.length + missed.length ? true : undefined),
        'recovery on the other pod',
      );
      expect(mover.ids('global').slice(expected.length)).toEqual(missed);
      expect(mover.errors).toEqual([]);
      console.log(
        `cross-pod: 2 pods × 2 workers, ${clients.length} subscribers, ${expected.length} messages, ` +
          `${clients.length * expected.length} deliveries, 0 missing, 0 duplicated; ` +
          `a client moved from pod 0 to pod 1 recovered ${missed.length}/${missed.length} in order`,
      );
    },
  );
});
