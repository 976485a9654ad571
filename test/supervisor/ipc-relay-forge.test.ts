/**
 * bus-hold and bus-release go from the supervisor to workers only. An app
 * that sends them (or an `own` history delivery) to the supervisor itself
 * changes nothing: no worker is held, nothing is relayed, the supervisor
 * stays up.
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

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

describe('an app that sends the relay hold messages to the supervisor', () => {
  it('changes nothing: publishers on every worker are read, every message arrives, no hold is counted', async () => {
    sup = await startSupervisor({ app: fixtureApp('ws-relay-forge'), workers: 2 });
    const running = sup;
    const forgedBy = new Set<number>();
    // from both workers (new connections are spread by the kernel): at most 40 requests
    for (let i = 0; i < 40 && forgedBy.size < 2; i++)
      for (const type of ['bus-hold', 'history', 'bus-release', 'bus-hold']) {
        const res = await fetch(`http://127.0.0.1:${running.httpPort}/forge?type=${type}&n=1000`, {
          method: 'POST',
          headers: { connection: 'close' },
        });
        forgedBy.add(((await res.json()) as { pid: number }).pid);
      }
    expect(forgedBy.size).toBe(2);

    const subscribers = [await client(running.httpPort, true), await client(running.httpPort, true)];
    const publishers = [await client(running.httpPort, false), await client(running.httpPort, false)];
    const expected: string[] = [];
    for (let i = 0; i < 500; i++)
      for (const [p, pub] of publishers.entries()) {
        pub.ws.send(
          `{"type":"publish","channel":"flood","data":{"id":"${p}-${i}"},"timestamp":${Date.now()}000000,"client_id":""}`,
        );
        expected.push(`${p}-${i}`);
      }
    for (const s of subscribers)
      await until(
        () => (s.ids.length >= expected.length ? true : undefined),
        'every publish delivered',
        30_000,
      );
    for (const s of subscribers) expect([...s.ids].sort()).toEqual([...expected].sort());
    expect(await metric(running, 'hyp_supervisor_ws_relay_backlogs_total')).toBe(0);
    expect(isAlive(running.proc.pid!)).toBe(true);
    expect((await running.status()).workers.every((w) => w.state === 'ready')).toBe(true);
  }, 60_000);
});
