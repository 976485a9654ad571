/**
 * A worker whose app publishes in a loop on the IPC bus, waiting while the
 * hub is congested (`hub.congested`, `hub.whenDrained()`). The parent plays
 * the supervisor: it reads the `bus` messages and may send `bus-hold` /
 * `bus-release`. On `{ type: 'go', total, bytes }` the loop publishes
 * `total` numbered messages of about `bytes` each on channel `ticks`; it
 * reports each wait (`{ type: 'wait', at }`: the publish it waits before)
 * and the end (`{ type: 'done' }`).
 */
import { IpcBus } from '../../../../apps/server/ws/bus.js';
import { createHub } from '../../../../apps/server/ws/hub.js';

const hub = createHub({ bus: new IpcBus(process, 7), pingIntervalMs: 0, presenceIntervalMs: 0 });

async function run(total: number, bytes: number): Promise<void> {
  const pad = 'x'.repeat(bytes);
  for (let i = 0; i < total; i++) {
    if (hub.congested) process.send?.({ type: 'wait', at: i });
    while (hub.congested) await hub.whenDrained();
    hub.publish('ticks', { i, pad });
  }
  process.send?.({ type: 'done' });
}

process.on('message', (m: { type?: string; total?: number; bytes?: number }) => {
  if (m.type === 'go') void run(m.total ?? 0, m.bytes ?? 0);
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'up' });
