/**
 * A worker of a roll that is still loading its app has no clients, but the
 * supervisor delivered the pod's channel history to it from its spawn: with
 * an app whose start blocks the event loop, those deliveries backed it up
 * and the supervisor held every serving worker's publishing clients until it
 * had loaded (a roll of an app taking 3 s to start stopped the pod's
 * deliveries for 3 s, on every rollout). Now a worker gets history
 * deliveries from the first thing it sends that needs them (ready, a
 * publish, a subscribe's recovery request), which the supervisor reads
 * before anything that could depend on them.
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await sup?.stop();
  sup = undefined;
});

async function metric(s: Running, series: string): Promise<number | undefined> {
  const text = await (await s.admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** A raw `ws` client (JSON codec) with the `flood` ids it got. */
async function client(port: number, subscribe: boolean) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  sockets.push(ws);
  const ids: string[] = [];
  ws.on('message', (data) => {
    const text = String(data);
    if (text.startsWith('{"type":"message","channel":"flood"')) ids.push(/"id":"([^"]*)"/.exec(text)![1]!);
  });
  await once(ws, 'open');
  if (subscribe) {
    const acked = new Promise<void>((resolve) =>
      ws.on('message', (data) => {
        if (String(data).startsWith('{"type":"subscribed"')) resolve();
      }),
    );
    ws.send(`{"type":"subscribe","data":{"channel":"flood"},"timestamp":${Date.now()}000000,"client_id":""}`);
    await acked;
  }
  return { ws, ids };
}

describe('a roll whose new worker is still loading its app', () => {
  it("does not hold the serving workers' publishers: every publish is delivered while it loads, and it serves the channel once ready", async () => {
    sup = await startSupervisor({
      app: fixtureApp('ws-relay-slow-roll'),
      workers: 1,
      env: { HYP_TEST_LOAD_MS: '20000' },
      sets: ['supervisor.heartbeat_timeout=120s', 'supervisor.ready_timeout=120s'],
    });
    const running = sup;
    const subscriber = await client(running.httpPort, true);
    const pub = await client(running.httpPort, false);
    running.proc.kill('SIGHUP');
    await running.waitFor(
      (s) => [...s.workers, ...s.other_workers].some((w) => w.generation === 2),
      'a worker of generation 2',
    );

    // 3,000 publishes of 1 KB (3 MB: far past what backs a channel up) while it loads for 20 s
    const pad = 'x'.repeat(1000);
    for (let i = 0; i < 3000; i++)
      pub.ws.send(
        `{"type":"publish","channel":"flood","data":{"id":"${i}","pad":"${pad}"},"timestamp":${Date.now()}000000,"client_id":""}`,
      );
    // before: held until the new worker had loaded (20 s)
    await until(() => (subscriber.ids.length >= 3000 ? true : undefined), '3,000 deliveries', 12_000);
    const status = await running.status();
    const loading = [...status.workers, ...status.other_workers].find((w) => w.generation === 2);
    expect(loading?.state).toBe('spawning');
    expect(subscriber.ids).toEqual(Array.from({ length: 3000 }, (_, i) => `${i}`));

    // once loaded it is ready, takes over, and delivers the channel (history from its ready on)
    await running.waitFor(
      (s) =>
        s.generation === 2 && s.other_workers.length === 0 && s.workers.every((w) => w.state === 'ready'),
      'generation 2 alone',
      60_000,
    );
    const later = await client(running.httpPort, true);
    const pub2 = await client(running.httpPort, false);
    pub2.ws.send(
      `{"type":"publish","channel":"flood","data":{"id":"after"},"timestamp":${Date.now()}000000,"client_id":""}`,
    );
    await until(() => (later.ids.includes('after') ? true : undefined), 'a delivery on generation 2');
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(0);
  }, 90_000);
});
