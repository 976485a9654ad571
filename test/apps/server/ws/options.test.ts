import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalBus } from '../../../../apps/server/ws/bus.js';
import { drainSpreadMs, hubOptionsFromConfig } from '../../../../apps/server/ws/options.js';
import { loadConfig } from '../../../../supervisor/config/load.js';

const noIpc = { send: undefined } as unknown as NodeJS.Process;

describe('hub options from the websocket config section', () => {
  it('defaults: 512 KiB messages, 25 s ping, 10 s pong, 1 MiB send buffer, close policy, no security', () => {
    const { config } = loadConfig({ env: {}, cwd: tmpdir() });
    const o = hubOptionsFromConfig(config, { ipc: noIpc });
    expect(o).toMatchObject({
      name: '/ws',
      maxMessageSize: 512 * 1024,
      pingIntervalMs: 25_000,
      pongTimeoutMs: 10_000,
      sendBufferLimit: 1024 * 1024,
      slowConsumer: 'close',
      historySize: 1000,
      security: undefined,
    });
    expect(o.bus).toBeInstanceOf(LocalBus);
    expect(drainSpreadMs(config)).toBe(5_000);
  });

  it('reads raw keys from the files named by HYP_WEBSOCKET_SECURITY_*_KEY_FILE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-ws-'));
    writeFileSync(join(dir, 'aes'), randomBytes(32));
    writeFileSync(join(dir, 'hmac'), randomBytes(48));
    const { config } = loadConfig({
      env: {
        HYP_WEBSOCKET_SECURITY_AES_KEY_FILE: join(dir, 'aes'),
        HYP_WEBSOCKET_SECURITY_HMAC_KEY_FILE: join(dir, 'hmac'),
      },
      cwd: tmpdir(),
    });
    const o = hubOptionsFromConfig(config, { ipc: noIpc });
    expect(o.security?.keys.aesKey?.length).toBe(32);
    expect(o.security?.keys.hmacKey?.length).toBe(48);
    expect(o.security?.signThenEncrypt).toBe(true);
  });
});

describe('websocket.max_subscriptions', () => {
  it('defaults to 1000 channels and rooms per connection and reaches the hub options', () => {
    const { config } = loadConfig({ env: {}, cwd: tmpdir() });
    expect(config.websocket.max_subscriptions).toBe(1000);
    const o = hubOptionsFromConfig(config, { ipc: noIpc });
    expect(o.maxSubscriptions).toBe(1000);
    const set = loadConfig({ env: { HYP_WEBSOCKET_MAX_SUBSCRIPTIONS: '20' }, cwd: tmpdir() });
    expect(hubOptionsFromConfig(set.config, { ipc: noIpc }).maxSubscriptions).toBe(20);
  });

  it('refuses 0 with HYP_E_CONFIG_INVALID at the key path', () => {
    expect(() => loadConfig({ env: { HYP_WEBSOCKET_MAX_SUBSCRIPTIONS: '0' }, cwd: tmpdir() })).toThrow(
      expect.objectContaining({
        code: 'HYP_E_CONFIG_INVALID',
        message: expect.stringContaining('websocket.max_subscriptions'),
      }),
    );
  });
});
