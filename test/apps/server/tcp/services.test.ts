import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import {
  createTcpServices,
  drainTcpServices,
  listenTcpServices,
} from '../../../../apps/server/tcp/services.js';
import { loadConfig } from '../../../../supervisor/config/load.js';
import type { Config } from '../../../../supervisor/config/schema.js';
import { dial, echo, readBytes, silentLog } from './helpers.js';

function configWith(env: Record<string, string>): Config {
  return loadConfig({ env, cwd: '/nonexistent-dir-for-tests' }).config;
}

describe('app.tcp()', () => {
  it('records named services for the worker', () => {
    const app = new App();
    app.tcp('echo', echo).tcp('lines', echo, { onError: () => {} });
    expect([...app.tcpServices.keys()]).toEqual(['echo', 'lines']);
  });

  it('refuses a non-function handler, a bad or reserved name and a duplicate, with catalog codes', () => {
    const app = new App();
    expect(() => app.tcp('echo', 42 as never)).toThrow(
      expect.objectContaining({ code: 'HYP_E_TCP_INVALID_HANDLER' }),
    );
    expect(() => app.tcp('Echo!', echo)).toThrow(
      expect.objectContaining({ code: 'HYP_E_TCP_INVALID_OPTION' }),
    );
    expect(() => app.tcp('http', echo)).toThrow(/reserved listener name/);
    app.tcp('echo', echo);
    expect(() => app.tcp('echo', echo)).toThrow(
      expect.objectContaining({ code: 'HYP_E_TCP_DUPLICATE_SERVICE' }),
    );
  });
});

describe('the worker side', () => {
  it('builds services from HYP_TCP_<NAME>_* config and serves them in standalone mode', async () => {
    const app = new App();
    app.tcp('echo', echo);
    const config = configWith({ HYP_TCP_ECHO_ADDR: '127.0.0.1:0', HYP_TCP_ECHO_IDLE_TIMEOUT: '1m' });
    const services = createTcpServices({
      registrations: app.tcpServices,
      config,
      log: silentLog,
      registry: new Registry(),
    });
    await listenTcpServices(services, new Map());
    const client = await dial(services[0]!.address().port);
    client.write('env');
    expect((await readBytes(client, 3)).toString()).toBe('env');
    client.destroy();
    await drainTcpServices(services, Date.now() + 1_000);
    expect(services[0]!.state).toBe('stopped');
  });

  it('stops start-up with HYP_E_TCP_UNKNOWN_SERVICE for a registered service without config', () => {
    const app = new App();
    app.tcp('echo', echo);
    expect(() =>
      createTcpServices({
        registrations: app.tcpServices,
        config: configWith({}),
        log: silentLog,
        registry: new Registry(),
      }),
    ).toThrow(
      expect.objectContaining({
        code: 'HYP_E_TCP_UNKNOWN_SERVICE',
        message: expect.stringContaining('tcp.echo.addr'),
      }),
    );
  });
});
