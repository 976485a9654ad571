import { tmpdir } from 'node:os';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Envelope, jsonData } from '../../../../apps/server/ws/envelope.js';
import { History } from '../../../../apps/server/ws/history.js';
import { hubOptionsFromConfig } from '../../../../apps/server/ws/options.js';
import { loadConfig } from '../../../../supervisor/config/load.js';
import { HubTestBed, json } from './helpers.js';

/**
 * The in-memory history (a hub without a supervisor or Redis: standalone
 * workers, a systemd socket unit) kept `history_size` messages per channel
 * for up to 10,000 channels whatever their size: a client publishing
 * 512 KiB messages could make it hold gigabytes. It now keeps
 * `websocket.history_bytes` at most, as the supervisor's pod-wide history does.
 */

const bed = new HubTestBed();

const message = (bytes: number): Envelope => ({
  type: 'message',
  channel: '',
  data: new Uint8Array(bytes),
  timestamp: 1n,
  clientId: '',
  offset: '',
});

describe('in-memory history bytes', () => {
  it('a client publishing large messages: the history keeps at most historyBytes; an old offset fails explicitly, a recent one resumes in order', async () => {
    const served = await bed.serve({ historyBytes: 64 * 1024 });
    const watcher = await bed.connect('json');
    watcher.subscribe('big');
    await watcher.until((x) => x.of('subscribed').length === 1);
    const publisher = await bed.connect('msgpack');
    for (let n = 0; n < 200; n++)
      publisher.send({ type: 'publish', channel: 'big', data: jsonData({ n, pad: 'p'.repeat(1000) }) });
    await watcher.until((x) => x.of('message').length === 200);
    const offsets = watcher.of('message').map((m) => m.offset);
    const late = await bed.connect('json');
    late.subscribe('big', offsets[0]);
    await late.until((x) => x.of('subscribed').length === 1);
    expect(late.of('error').map((m) => (json(m) as { code: string }).code)).toEqual([
      'HYP_E_WS_RECOVERY_FAILED',
    ]);
    const recent = await bed.connect('json');
    recent.subscribe('big', offsets[189]);
    await recent.until((x) => x.of('subscribed').length === 1);
    expect(recent.of('message').map((m) => (json(m) as { n: number }).n)).toEqual([
      190, 191, 192, 193, 194, 195, 196, 197, 198, 199,
    ]);
    expect(served.hub.history.bytes).toBeLessThanOrEqual(64 * 1024);
  });

  it('channels share the budget: the one holding messages the longest gives up its oldest first', () => {
    const h = new History({ size: 100, maxBytes: 1000, epoch: 'e' });
    const a = [0, 1, 2].map(() => h.append('a', message(200)));
    const b = [0, 1].map(() => h.append('b', message(200)));
    expect(h.bytes).toBe(1000);
    h.append('b', message(200));
    expect(h.bytes).toBe(1000);
    // a's first message went: a resume that needs it fails, one from it on still works
    expect(h.since('a', 'e:0')).toMatchObject({ ok: false, reason: /no longer in history/ });
    expect(h.since('a', a[0]!)).toMatchObject({ ok: true, messages: [{ offset: a[1] }, { offset: a[2] }] });
    expect(h.since('b', 'e:0')).toMatchObject({ ok: true });
    expect(h.since('b', b[0]!)).toMatchObject({ ok: true, messages: [{ offset: b[1] }, {}] });
  });

  it('a message larger than the budget is delivered but not kept; its channel forgets its older ones, the others keep theirs', () => {
    const h = new History({ size: 100, maxBytes: 1000, epoch: 'e' });
    const a = h.append('a', message(100));
    const b0 = h.append('b', message(100));
    h.append('b', message(5000));
    const b2 = h.append('b', message(100));
    expect(h.bytes).toBe(200);
    expect(h.since('a', 'e:0')).toMatchObject({ ok: true, messages: [{ offset: a }] });
    expect(h.since('b', b0)).toMatchObject({ ok: false });
    expect(h.since('b', b2)).toMatchObject({ ok: true, messages: [] });
  });

  it('property: a resume either fails or returns exactly what followed the offset on its channel, in order; bytes stay within the bound', () => {
    const channels = ['a', 'b', 'c'];
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.tuple(fc.constantFrom(...channels), fc.integer({ min: 0, max: 600 })), {
          maxLength: 60,
        }),
        fc.array(fc.tuple(fc.constantFrom(...channels), fc.nat()), { maxLength: 20 }),
        (size, appends, resumes) => {
          const h = new History({ size, maxBytes: 500, epoch: 'e' });
          const log = new Map<string, string[]>(channels.map((ch) => [ch, []]));
          for (const [ch, bytes] of appends) log.get(ch)!.push(h.append(ch, message(bytes)));
          expect(h.bytes).toBeLessThanOrEqual(500);
          for (const [ch, pick] of resumes) {
            const offsets = log.get(ch)!;
            if (offsets.length === 0) continue;
            const i = pick % offsets.length;
            const r = h.since(ch, offsets[i]!);
            if (r.ok) expect(r.messages.map((m) => m.offset)).toEqual(offsets.slice(i + 1));
            // the newest is always a resume point, whatever was dropped
            if (i === offsets.length - 1) expect(r).toEqual({ ok: true, messages: [] });
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('websocket.history_bytes (64 MiB) reaches the hub options', () => {
    const { config } = loadConfig({ env: {}, cwd: tmpdir() });
    const o = hubOptionsFromConfig(config, { ipc: { send: undefined } as unknown as NodeJS.Process });
    expect(o.historyBytes).toBe(64 * 1024 * 1024);
  });
});
