/**
 * Server-sent event streams never end on their own: when their worker
 * drains they are closed with a `retry:` reconnect hint spread over
 * `drain.websocket_spread`, so a rolling restart does not wait for them
 * until the drain deadline, and EventSource clients reconnect spread out.
 */
import { get, type IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
const responses: IncomingMessage[] = [];
afterEach(async () => {
  for (const res of responses.splice(0)) res.destroy();
  await sup?.stop();
  sup = undefined;
});

/** An open event stream: everything it has received, and whether it ended. */
async function openStream(port: number): Promise<{ text(): string; ended(): boolean }> {
  const res = await new Promise<IncomingMessage>((resolve, reject) =>
    get({ host: '127.0.0.1', port, path: '/events' }, resolve).on('error', reject),
  );
  responses.push(res);
  expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
  let text = '';
  let ended = false;
  res.setEncoding('utf8');
  res.on('data', (d: string) => {
    text += d;
  });
  res.on('end', () => {
    ended = true;
  });
  res.on('error', () => {});
  return { text: () => text, ended: () => ended };
}

describe('event streams at drain', () => {
  it('a rolling restart closes open streams with a retry hint under the spread; the old worker exits 0 without reaching its deadline', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 1,
      // A deadline far beyond the test's own timeout: only closing the streams lets the restart finish.
      sets: ['drain.timeout=300s', 'drain.websocket_spread=2s'],
    });
    const streams = [await openStream(sup.httpPort), await openStream(sup.httpPort)];
    const oldPid = (await sup.status()).workers[0]!.pid;
    for (const s of streams) await until(() => s.text().includes(`data: ${oldPid}`), 'first event', 20_000);

    const restart = await sup.admin('/restart?wait=1', { method: 'POST' });
    expect(restart.status).toBe(200);
    for (const s of streams) {
      await until(() => s.ended() || undefined, 'stream ended', 30_000);
      const hint = /\nretry: (\d+)\n\n$/.exec(s.text());
      expect(hint, s.text()).not.toBeNull();
      expect(Number(hint![1])).toBeLessThan(2000);
    }
    const exited = await sup.waitLog(
      (l) => l.msg === 'worker exited' && l.worker_pid === oldPid,
      'old worker exited',
    );
    expect(exited.exit).toBe('code 0');
    expect(sup.logs.some((l) => l.code === 'HYP_E_DRAIN_TIMEOUT')).toBe(false);
    expect(sup.logs.some((l) => l.msg === 'event streams closed for the drain' && l.streams === 2)).toBe(
      true,
    );

    // A reconnect lands on the new worker.
    const again = await openStream(sup.httpPort);
    const newPid = (await sup.status()).workers[0]!.pid;
    expect(newPid).not.toBe(oldPid);
    await until(() => again.text().includes(`data: ${newPid}`), 'event from the new worker', 20_000);
  });
});
