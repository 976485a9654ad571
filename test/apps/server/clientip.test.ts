/**
 * `c.clientIp` with hostile `X-Forwarded-For` entries: the value is always an
 * IP address (or '' once the socket is gone), never the client's text.
 */
import { Value } from '@sinclair/typebox/value';
import { afterEach, describe, expect, it } from 'vitest';
import { clientIpResolver } from '../../../apps/server/clientip.js';
import { type Config, ConfigSchema } from '../../../supervisor/config/schema.js';
import { type Served, serve } from './serve.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function configWith(server: Record<string, unknown>): Config {
  return Value.Default(ConfigSchema, { server }) as Config;
}

async function clientIpFor(xff: string): Promise<string> {
  served ??= await serve((app) => app.get('/ip', (c) => c.json({ ip: c.clientIp })), {
    config: configWith({ trusted_proxies: ['127.0.0.1/8', '10.0.0.0/8'] }),
  });
  const res = await fetch(`${served.url}/ip`, { headers: { 'x-forwarded-for': xff } });
  return ((await res.json()) as { ip: string }).ip;
}

describe('c.clientIp through trusted proxies', () => {
  it('keeps the Express answer for well-formed entries', async () => {
    expect(await clientIpFor('198.51.100.7')).toBe('198.51.100.7');
    expect(await clientIpFor('6.6.6.6, 198.51.100.7, 10.1.1.1')).toBe('198.51.100.7');
    expect(await clientIpFor('2001:db8::1, 10.1.1.1')).toBe('2001:db8::1');
    // every hop trusted: the leftmost is the client
    expect(await clientIpFor('10.9.9.9, 10.1.1.1')).toBe('10.9.9.9');
  });

  it('ends the walk at an entry that is not an IP: the last trusted hop is the client', async () => {
    const junk = [
      'unknown',
      '<script>alert(1)</script>',
      '1.2.3.4:5',
      'a'.repeat(8192),
      'fe80::1%' + 'a'.repeat(100),
      'x\ty',
    ];
    for (const entry of junk) {
      // the socket peer (trusted) wrote the entry itself
      expect(await clientIpFor(entry), entry.slice(0, 40)).toBe('127.0.0.1');
      // a trusted hop in between wrote it: that hop is the client
      expect(await clientIpFor(`198.51.100.7, ${entry}, 10.1.1.1`), entry.slice(0, 40)).toBe('10.1.1.1');
    }
  });

  it("is '' (a string) when the socket is gone", () => {
    const resolve = clientIpResolver(['127.0.0.1/8']);
    const req = { headers: { 'x-forwarded-for': '1.2.3.4' }, socket: {}, connection: {} };
    expect(resolve(req as never)).toBe('');
  });
});
