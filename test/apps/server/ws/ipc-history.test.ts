import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { IpcBus, LocalBus } from '../../../../apps/server/ws/bus.js';
import { jsonData } from '../../../../apps/server/ws/envelope.js';
import { IpcHistory } from '../../../../apps/server/ws/ipc-history.js';
import { hubOptionsFromConfig } from '../../../../apps/server/ws/options.js';
import { loadConfig } from '../../../../supervisor/config/load.js';
import { podHistoryChannels as pod } from './helpers.js';

const envelope = (n: number) => ({
  type: 'message',
  channel: 'news',
  data: jsonData({ n }),
  timestamp: 1n,
  clientId: 'c',
  offset: '',
});

describe('IpcHistory (pod-wide history, worker side)', () => {
  it('delivers every publish to every worker, the publisher included, with the same offsets in the same order', async () => {
    const { channels } = pod(2);
    const [a, b] = channels.map((channel) => new IpcHistory({ topic: '/ws', channel }));
    const seen: string[][] = [[], []];
    a!.onDelivery((ch, m) => seen[0]!.push(`${ch}@${m.offset}`));
    b!.onDelivery((ch, m) => seen[1]!.push(`${ch}@${m.offset}`));
    for (let n = 0; n < 5; n++) (n % 2 ? a : b)!.publish('news', envelope(n));
    await new Promise((r) => setTimeout(r, 10));
    expect(seen[0]).toHaveLength(5);
    expect(seen[1]).toEqual(seen[0]);
  });

  it('recovers on another worker what followed an offset, and fails explicitly for a foreign one', async () => {
    const { channels } = pod(2);
    const [a, b] = channels.map((channel) => new IpcHistory({ topic: '/ws', channel }));
    const offsets: string[] = [];
    a!.onDelivery((_ch, m) => offsets.push(m.offset));
    for (let n = 0; n < 4; n++) a!.publish('news', envelope(n));
    await new Promise((r) => setTimeout(r, 10));
    const { head, recovery } = await b!.recover('news', offsets[1]!);
    expect(head).toBe(offsets[3]);
    expect(recovery.ok && recovery.messages.map((m) => m.offset)).toEqual(offsets.slice(2));
    expect(recovery.ok && recovery.messages.map((m) => JSON.parse(Buffer.from(m.data).toString()).n)).toEqual(
      [2, 3],
    );
    const foreign = await b!.recover('news', `${(1n << 64n) + 1n}-2`);
    expect(foreign.recovery).toMatchObject({ ok: false, reason: expect.stringMatching(/another history/) });
  });

  it('assembles a replay the supervisor sent in pages into one ordered recovery', async () => {
    const { channels } = pod(1, { maxBytes: 1 });
    const h = new IpcHistory({ topic: '/ws', channel: channels[0] });
    const offsets: string[] = [];
    h.onDelivery((_ch, m) => offsets.push(m.offset));
    const { head } = await h.recover('news', '');
    for (let n = 0; n < 6; n++) h.publish('news', envelope(n));
    await new Promise((r) => setTimeout(r, 10));
    const { recovery } = await h.recover('news', head);
    expect(recovery.ok && recovery.messages.map((m) => m.offset)).toEqual(offsets);
  });

  it('keeps hubs on different paths apart', async () => {
    const { channels } = pod(1);
    const ws = new IpcHistory({ topic: '/ws', channel: channels[0] });
    const chat = new IpcHistory({ topic: '/chat', channel: channels[0] });
    const got: string[] = [];
    ws.onDelivery(() => got.push('ws'));
    chat.onDelivery(() => got.push('chat'));
    chat.publish('news', envelope(1));
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual(['chat']);
  });

  it('rejects recovery when the supervisor does not answer in time (explicit, never a silent gap)', async () => {
    const { channels } = pod(1, { answer: false });
    const h = new IpcHistory({ topic: '/ws', channel: channels[0], timeoutMs: 50 });
    await expect(h.recover('news', '')).rejects.toThrow(/did not answer within 50 ms/);
    await h.close();
    await expect(h.recover('news', '')).rejects.toThrow(/no supervisor IPC channel/);
  });
});

describe('history choice from config', () => {
  const fakeProcess = { send: () => true, on() {}, off() {} } as unknown as NodeJS.Process;

  it('uses the pod-wide IpcHistory with the ipc driver under a supervisor (IPC channel and LISTEN_FDS)', () => {
    const { config } = loadConfig({ env: {}, cwd: tmpdir() });
    const saved = process.env.LISTEN_FDS;
    process.env.LISTEN_FDS = '1';
    try {
      const o = hubOptionsFromConfig(config, { ipc: fakeProcess, path: '/ws' });
      expect(o.sharedHistory).toBeInstanceOf(IpcHistory);
      // rooms, broadcasts, direct sends and presence still travel on the bus; channel publishes do not
      expect(o.bus).toBeInstanceOf(IpcBus);
    } finally {
      if (saved === undefined) delete process.env.LISTEN_FDS;
      else process.env.LISTEN_FDS = saved;
    }
  });

  it('keeps the in-memory history outside a supervisor', () => {
    const { config } = loadConfig({ env: {}, cwd: tmpdir() });
    const saved = process.env.LISTEN_FDS;
    delete process.env.LISTEN_FDS;
    try {
      const o = hubOptionsFromConfig(config, { ipc: { send: undefined } as unknown as NodeJS.Process });
      expect(o.sharedHistory).toBeUndefined();
      expect(o.bus).toBeInstanceOf(LocalBus);
    } finally {
      if (saved !== undefined) process.env.LISTEN_FDS = saved;
    }
  });
});
