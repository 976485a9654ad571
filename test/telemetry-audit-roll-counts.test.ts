/**
 * A rolling restart right after traffic and before any scrape: what the old
 * generation counted since the last scrape stays in the pod's counters.
 */
import { afterEach, expect, it } from 'vitest';
import { parseExposition } from './apps/server/telemetry/exposition.js';
import { fixtureApp, type Running, startSupervisor, until } from './helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

const total = (text: string) =>
  (parseExposition(text).get('hyp_http_requests_total')?.samples ?? []).reduce((a, s) => a + s.value, 0);

it('a SIGUSR2 roll: the old generation requests since the last scrape are counted', async () => {
  sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2 });
  const scrape = async () => (await sup!.admin('/metrics')).text();
  expect(total(await scrape())).toBe(0);
  for (let i = 0; i < 50; i++) await (await fetch(`http://127.0.0.1:${sup.httpPort}/`)).text();
  // Counted when the response closes, a tick after the client has it: let the workers get there.
  await new Promise((r) => setTimeout(r, 100));
  const before = await sup.status();
  process.kill(sup.proc.pid!, 'SIGUSR2');
  await sup.waitFor(
    (s) =>
      s.generation === before.generation + 1 &&
      s.other_workers.length === 0 &&
      s.workers.every((w) => w.state === 'ready'),
    'the old generation gone',
  );
  const text = await until(
    async () => {
      const t = await scrape();
      return total(t) >= 50 ? t : undefined;
    },
    'fifty requests counted',
    5000,
  ).catch(() => scrape());
  expect(total(text)).toBe(50);
});
