import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { hubOptionsFromConfig } from '../../../../apps/server/ws/options.js';
import { loadConfig } from '../../../../supervisor/config/load.js';
import { HubTestBed, json } from './helpers.js';

/**
 * `websocket.security.max_failures` bounds the frames a connection may send
 * that the hub refuses (undecodable, and with keys: failing decryption,
 * verification or the replay guard). Undecodable frames are counted without
 * key files too, so the setting applies without them.
 */

const noIpc = { send: undefined } as unknown as NodeJS.Process;
const bed = new HubTestBed();

function optionsWith(...sets: string[]) {
  const { config } = loadConfig({ env: {}, cwd: tmpdir(), sets });
  return { ...hubOptionsFromConfig(config, { ipc: noIpc }), pingIntervalMs: 0 };
}

async function garbageUntilClosed(frames: number) {
  const c = await bed.connect('json');
  for (let i = 0; i < frames; i++) c.ws.send('garbage');
  await c.until((x) => x.closed !== undefined || x.of('error').length === frames);
  // a close would follow the last error frame at once: give it the chance to arrive
  c.subscribe('probe', '');
  await c.until((x) => x.closed !== undefined || x.of('subscribed').length === 1);
  return c;
}

describe('websocket.security.max_failures', () => {
  it('without key files: 20 allows 19 undecodable frames, the 20th closes with 1008', async () => {
    const options = optionsWith('websocket.security.max_failures=20');
    expect(options.security).toBeUndefined();
    await bed.serve(options);
    const open = await garbageUntilClosed(19);
    expect(open.closed).toBeUndefined();
    expect(open.of('error').map((m) => (json(m) as { code: string }).code)).toEqual(
      Array(19).fill('HYP_E_WS_DECODE'),
    );
    open.ws.send('garbage');
    await open.until((x) => x.closed !== undefined);
    expect(open.closed).toEqual({ code: 1008, reason: 'too many invalid messages' });
  });

  it('without key files: 1 closes on the first undecodable frame', async () => {
    await bed.serve(optionsWith('websocket.security.max_failures=1'));
    const c = await garbageUntilClosed(1);
    expect(c.closed?.code).toBe(1008);
  });

  it('the default is still 5', async () => {
    await bed.serve(optionsWith());
    const c = await garbageUntilClosed(5);
    expect(c.closed?.code).toBe(1008);
    expect(c.of('error')).toHaveLength(5);
  });

  it('a hub made in code takes maxFailures at the top level, and refuses one below 1', async () => {
    await bed.serve({ maxFailures: 2 });
    const c = await garbageUntilClosed(2);
    expect(c.closed?.code).toBe(1008);
    await expect(bed.serve({ maxFailures: 0 })).rejects.toThrow(/maxFailures/);
  });
});
