/**
 * The relay gives up on a backed-up worker that reads nothing for
 * supervisor.heartbeat_timeout. A roll that changes heartbeat_timeout (SIGHUP,
 * `hyp reload`) must change that bound for the new workers as it does the
 * heartbeat watchdog's: before, they kept the bound of the config the pod
 * started with, so raising the timeout to let workers through a long pause
 * still got them cut off (HYP_E_WORKER_RELAY_STALLED) at the old one.
 */
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
const sockets: WebSocket[] = [];
const stopped: number[] = [];
afterEach(async () => {
  for (const pid of stopped.splice(0)) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {}
  }
  for (const ws of sockets.splice(0)) ws.terminate();
  await sup?.stop();
  sup = undefined;
});

async function metric(s: Running, series: string): Promise<number | undefined> {
  const text = await (await s.admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** A raw `ws` client (JSON codec) and the pid of the worker it reached. */
async function client(port: number, subscribe: boolean) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  sockets.push(ws);
  let pid = 0;
  ws.on('message', (data) => {
    const text = String(data);
    if (text.startsWith('{"type":"message","data":{"pid"'))
      pid = (JSON.parse(text) as { data: { pid: number } }).data.pid;
  });
  await once(ws, 'open');
  if (subscribe)
    ws.send(`{"type":"subscribe","data":{"channel":"flood"},"timestamp":${Date.now()}000000,"client_id":""}`);
  await until(() => (pid ? true : undefined), 'the greeting');
  return { ws, pid };
}

describe('a roll that raises supervisor.heartbeat_timeout', () => {
  it('gives the new workers the new relay bound: one stopped for longer than the old timeout is held for, not cut off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipc-relay-reload-'));
    const file = join(dir, 'hyp.yaml');
    writeFileSync(file, 'supervisor:\n  heartbeat_timeout: 2s\n');
    sup = await startSupervisor({ app: fixtureApp('ws-relay'), workers: 2, env: { HYP_CONFIG: file } });
    const running = sup;
    writeFileSync(file, 'supervisor:\n  heartbeat_timeout: 60s\n');
    running.proc.kill('SIGHUP');
    await running.waitLog((l) => l.msg === 'configuration reloaded', 'the roll', 60_000);
    await running.waitFor(
      (s) =>
        s.generation === 2 && s.other_workers.length === 0 && s.workers.every((w) => w.state === 'ready'),
      'generation 2 alone',
      60_000,
    );

    const subscriber = await client(running.httpPort, true);
    process.kill(subscriber.pid, 'SIGSTOP');
    stopped.push(subscriber.pid);
    const pub = await client(running.httpPort, false);
    const pad = 'x'.repeat(1000);
    // 1 KB publishes until the stopped worker is backed up (at most 10 s), then 5 s more stopped
    const end = Date.now() + 10_000;
    let sent = 0;
    while (Date.now() < end && !((await metric(running, 'hyp_supervisor_ws_relay_backlogs_total')) ?? 0)) {
      for (let k = 0; k < 200; k++)
        pub.ws.send(
          `{"type":"publish","channel":"flood","data":{"id":"${sent++}","pad":"${pad}"},"timestamp":${Date.now()}000000,"client_id":""}`,
        );
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await metric(running, 'hyp_supervisor_ws_relay_backlogs_total')).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 5_000));
    // before: cut off 2 s (the start's heartbeat_timeout) after it stopped reading
    expect(running.logs.find((l) => l.code === 'HYP_E_WORKER_RELAY_STALLED')).toBeUndefined();
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(0);
  }, 120_000);
});
