/**
 * The relay gives up on a backed-up worker that reads nothing for
 * supervisor.heartbeat_timeout. A roll that changes heartbeat_timeout (SIGHUP,
 * `hyp reload`) must change that bound for the new workers as it does the
 * heartbeat watchdog's: before, they kept the bound of the config the pod
 * started with, so raising the timeout to let workers through a long pause
 * still got them cut off (HYP_E_WORKER_RELAY_STALLED) at the old one.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixtureApp } from '../helpers/supervisor.js';
import { metric, relayPod } from './relay-helpers.js';

const pod = relayPod();

describe('a roll that raises supervisor.heartbeat_timeout', () => {
  it('gives the new workers the new relay bound: one stopped for longer than the old timeout is held for, not cut off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipc-relay-reload-'));
    const file = join(dir, 'hyp.yaml');
    writeFileSync(file, 'supervisor:\n  heartbeat_timeout: 2s\n');
    const running = await pod.start({ app: fixtureApp('ws-relay'), workers: 2, env: { HYP_CONFIG: file } });
    writeFileSync(file, 'supervisor:\n  heartbeat_timeout: 60s\n');
    running.proc.kill('SIGHUP');
    await running.waitLog((l) => l.msg === 'configuration reloaded', 'the roll', 60_000);
    await running.waitFor(
      (s) =>
        s.generation === 2 && s.other_workers.length === 0 && s.workers.every((w) => w.state === 'ready'),
      'generation 2 alone',
      60_000,
    );

    const subscriber = await pod.client(running.httpPort, true);
    process.kill(subscriber.pid, 'SIGSTOP');
    pod.stopped.push(subscriber.pid);
    const pub = await pod.client(running.httpPort, false);
    const pad = 'x'.repeat(1000);
    // 1 KB publishes until the stopped worker is backed up (at most 10 s), then 5 s more stopped
    const end = Date.now() + 10_000;
    let sent = 0;
    while (Date.now() < end && !((await metric(running, 'hyp_supervisor_ws_relay_backlogs_total')) ?? 0)) {
      for (let k = 0; k < 200; k++) pub.publish(`${sent++}`, pad);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await metric(running, 'hyp_supervisor_ws_relay_backlogs_total')).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 5_000));
    // before: cut off 2 s (the start's heartbeat_timeout) after it stopped reading
    expect(running.logs.find((l) => l.code === 'HYP_E_WORKER_RELAY_STALLED')).toBeUndefined();
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(0);
  }, 120_000);
});
