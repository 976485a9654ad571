/**
 * The replay guard beyond one worker (`websocket.security.replay_window`):
 * a sealed publish captured on the wire and sent again on new connections is
 * refused on every worker of the pod (the supervisor's window) and on every
 * pod sharing the redis bus (claims in Redis), not only on the worker that
 * first took it. Real supervisors, workers, sockets and redis-server.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { jsonCodec } from '../../apps/server/ws/codecs/index.js';
import { nowNs } from '../../apps/server/ws/envelope.js';
import { Security } from '../../apps/server/ws/security.js';
import { json, TestClient } from '../apps/server/ws/helpers.js';
import { redisBinary } from '../apps/server/ws/redis-server.js';
import { fixtureApp, type Running, startSupervisor } from '../helpers/supervisor.js';
import { type RedisServer, startRedis } from './ws-helpers.js';

const redisPath = redisBinary();

const pods: Running[] = [];
const clients: TestClient[] = [];
let redis: RedisServer | undefined;
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await Promise.all(pods.splice(0).map((p) => p.stop()));
  await redis?.stop();
  redis = undefined;
});

/** Key files on disk, the `--set`s naming them with a 30 s replay window, and the clients' pipeline. */
function sealedSetup(): { sets: string[]; security: Security } {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-replay-'));
  const aes = randomBytes(32);
  writeFileSync(join(dir, 'aes.key'), aes);
  return {
    sets: [`websocket.security.aes_key_file=${join(dir, 'aes.key')}`, 'websocket.security.replay_window=30s'],
    security: new Security({ keys: { aesKey: aes } }),
  };
}

/** A sealed client on `pod`, and the pid of the worker it reached (the ws-relay fixture greets with it). */
async function connect(pod: Running, security: Security): Promise<{ client: TestClient; pid: number }> {
  const client = await TestClient.connect(`ws://127.0.0.1:${pod.httpPort}/ws`, 'json', { security });
  clients.push(client);
  const [greeting] = await client.nextOf('message');
  return { client, pid: (json(greeting!) as { pid: number }).pid };
}

/** One client on each of the pod's two workers (new connections until both answered). */
async function onBothWorkers(pod: Running, security: Security): Promise<TestClient[]> {
  const byPid = new Map<number, TestClient>();
  for (let i = 0; i < 40 && byPid.size < 2; i++) {
    const { client, pid } = await connect(pod, security);
    if (!byPid.has(pid)) byPid.set(pid, client);
  }
  expect(byPid.size).toBe(2);
  return [...byPid.values()];
}

/** A publish of `data` on `channel` as a client seals it: the bytes an eavesdropper would capture. */
function sealedPublish(security: Security, channel: string, data: unknown): Buffer {
  const bytes = jsonCodec.marshal({
    type: 'publish',
    channel,
    data: Buffer.from(JSON.stringify(data)),
    timestamp: nowNs(),
    clientId: '',
    offset: '',
  });
  return Buffer.from(security.seal(bytes));
}

/** The `n` payloads each subscriber received on `channel`. */
function received(subscribers: readonly TestClient[], channel: string): unknown[][] {
  return subscribers.map((s) =>
    s
      .of('message')
      .filter((m) => m.channel === channel)
      .map(json),
  );
}

/** Stamped (under the replay guard a frame without a timestamp is refused): a subscribe and its ack. */
async function subscribe(c: TestClient, channel: string): Promise<void> {
  const before = c.of('subscribed').length;
  c.send({
    type: 'subscribe',
    data: jsonCodec.encodeChannelRequest({ channel, offset: '' }),
    timestamp: nowNs(),
  });
  await c.nextOf('subscribed', before + 1);
}

/**
 * Sends `frame` once on `publisher`, then again on each of `replayers`
 * (each another connection), each followed by a fresh subscribe whose ack
 * comes once the copy was judged (a connection's frames are handled in
 * order); then a fresh marker publish: once every subscriber has the
 * marker, every copy of `frame` that was taken has reached them too.
 */
async function replayAndMark(
  security: Security,
  publisher: TestClient,
  replayers: readonly TestClient[],
  subscribers: readonly TestClient[],
): Promise<void> {
  for (const s of subscribers) await subscribe(s, 'news');
  const frame = sealedPublish(security, 'news', { n: 'original' });
  publisher.ws.send(frame);
  await Promise.all(subscribers.map((s) => s.until(() => received([s], 'news')[0]!.length >= 1)));
  for (const r of replayers) {
    r.ws.send(frame);
    await subscribe(r, 'probe');
  }
  publisher.ws.send(sealedPublish(security, 'news', { n: 'marker' }));
  await Promise.all(
    subscribers.map((s) =>
      s.until(() => received([s], 'news')[0]!.some((m) => JSON.stringify(m) === '{"n":"marker"}')),
    ),
  );
}

/** The error codes `c` received. */
function errorCodes(c: TestClient): string[] {
  return c.of('error').map((e) => (json(e) as { code: string }).code);
}

describe('websocket.security.replay_window across workers and pods', () => {
  it('a sealed publish replayed on connections to the other worker of the pod is refused there too: delivered once', async () => {
    const { sets, security } = sealedSetup();
    const pod = await startSupervisor({ app: fixtureApp('ws-relay'), workers: 2, sets });
    pods.push(pod);
    const [onA, onB] = await onBothWorkers(pod, security);
    const subscribers = await onBothWorkers(pod, security);
    // replays on the other worker (the case a per-worker cache misses) and on the same one
    const replayers = [(await onBothWorkers(pod, security))[0]!, ...(await onBothWorkers(pod, security))];
    await replayAndMark(security, onA!, [onB!, ...replayers], subscribers);
    for (const got of received(subscribers, 'news'))
      expect(got).toEqual([{ n: 'original' }, { n: 'marker' }]);
    for (const r of [onB!, ...replayers]) expect(errorCodes(r)).toEqual(['HYP_E_WS_REPLAY']);
  });

  it.skipIf(!redisPath)(
    'with the redis bus, a sealed publish replayed to another pod is refused there: delivered once on both pods',
    async () => {
      redis = await startRedis(redisPath!);
      const { sets, security } = sealedSetup();
      const shared = [...sets, 'websocket.bus.driver=redis', `websocket.bus.redis_url=${redis.url}`];
      pods.push(
        ...(await Promise.all([
          startSupervisor({ app: fixtureApp('ws-relay'), workers: 2, sets: shared }),
          startSupervisor({ app: fixtureApp('ws-relay'), workers: 2, sets: shared }),
        ])),
      );
      const [podA, podB] = pods as [Running, Running];
      const publisher = (await connect(podA, security)).client;
      const subscribers = [
        ...(await onBothWorkers(podA, security)),
        ...(await onBothWorkers(podB, security)),
      ];
      const replayers = [...(await onBothWorkers(podB, security)), ...(await onBothWorkers(podA, security))];
      await replayAndMark(security, publisher, replayers, subscribers);
      for (const got of received(subscribers, 'news'))
        expect(got).toEqual([{ n: 'original' }, { n: 'marker' }]);
      for (const r of replayers) expect(errorCodes(r)).toEqual(['HYP_E_WS_REPLAY']);
    },
  );
});
