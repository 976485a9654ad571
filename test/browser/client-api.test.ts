/**
 * The client library's API in a real browser (docs/websocket.md, Client
 * library): Debian's Chromium driven by playwright-core loads a page from a
 * real supervisor and runs, through WebCrypto: acknowledged publishes (an
 * offset; the hub's refusal as a PublishAckError, not an error event),
 * rooms and presence (own join, member list, a broadcast back to its
 * sender), an incoming message over maxMessageSize (dropped and reported,
 * the connection stays open: a browser socket cannot close with 1009), and a
 * refused upgrade (403: a `connect_error` saying only 'handshake failed' —
 * a browser shows no status — before each 1006 close and reconnect, no
 * error event, connect() waits until close()), and close() with a code
 * browsers refuse (a RangeError before anything changes: still usable).
 *
 * Chromium missing: the suite fails on CI (.ci/run installs it) and is skipped
 * with a message elsewhere.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, root, startSupervisor } from '../helpers/supervisor.js';
import type { Api, PageKeys } from './api-page.js';
import { chromiumPath, haveChromium, openPage } from './chromium.js';

const runHere = haveChromium || Boolean(process.env.CI);
if (!runHere) {
  console.warn(
    `skipping the Chromium client API test: ${chromiumPath} not found (apt-get install -y chromium)`,
  );
}

const aesKey = randomBytes(32);
const hmacKey = randomBytes(32);
const keys: PageKeys = { aes: aesKey.toString('hex'), hmac: hmacKey.toString('hex') };

let dir: string | undefined;
let sup: Running | undefined;
let browser: Browser | undefined;
let page: Page;
let wsUrl: string;

type Win = { hypApi?: Api };

describe.runIf(runHere)('client library API in Chromium', () => {
  beforeAll(async () => {
    if (!haveChromium) throw new Error(`${chromiumPath} not found: CI must install Debian's chromium`);
    if (!existsSync(fixtureApp('browser'))) {
      throw new Error(`${fixtureApp('browser')} not found: build first (npx tsc -p .)`);
    }
    dir = mkdtempSync(join(tmpdir(), 'hyp-browser-api-'));
    const bundle = join(dir, 'api-page.js');
    // platform 'browser': a Node built-in anywhere in the client's graph is a build error
    await build({
      entryPoints: [join(root, 'test', 'browser', 'api-page.ts')],
      outfile: bundle,
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome110'],
      logLevel: 'silent',
    });
    writeFileSync(join(dir, 'aes.key'), aesKey);
    writeFileSync(join(dir, 'hmac.key'), hmacKey);
    sup = await startSupervisor({
      app: fixtureApp('browser'),
      workers: 2,
      sets: [
        `websocket.security.aes_key_file=${join(dir, 'aes.key')}`,
        `websocket.security.hmac_key_file=${join(dir, 'hmac.key')}`,
      ],
      env: { HYP_TEST_BROWSER_BUNDLE: bundle },
    });
    wsUrl = `ws://127.0.0.1:${sup.httpPort}/ws`;
    ({ browser, page } = await openPage(`http://127.0.0.1:${sup.httpPort}/`, 'hypApi'));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await sup?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("publishAck resolves with the delivery's offset; the hub's refusal rejects as a PublishAckError, not an error event", async () => {
    const out = await page.evaluate(([url, k]) => (globalThis as Win).hypApi!.acknowledged(url, k), [
      wsUrl,
      keys,
    ] as const);
    // the pod-wide history's offsets: <epoch ≥ 2^64>-<seq>
    expect(out.offset).toMatch(/^\d{20,}-\d+$/);
    expect(out.refusal).toEqual({
      isPublishAckError: true,
      code: 'HYP_E_WS_NAME_TOO_LONG',
      channel: 'the long one',
      idMatches: true,
    });
    expect(out.errorEvents).toEqual([]);
  });

  it('rooms: presence events include its own join, presence() lists the members, a broadcast comes back to its sender', async () => {
    const out = await page.evaluate(([url, k]) => (globalThis as Win).hypApi!.rooms(url, k), [
      wsUrl,
      keys,
    ] as const);
    const [ownJoin, otherJoin, list] = out.presence as [unknown, unknown, { members: string[] }];
    expect(ownJoin).toEqual({ event: 'join', room_id: 'lobby', client_id: 'page-a' });
    expect(otherJoin).toEqual({ event: 'join', room_id: 'lobby', client_id: 'page-b' });
    // the two clients may sit on different workers: the list comes from every node, in no set order
    expect({ ...list, members: [...list.members].sort() }).toEqual({
      room_id: 'lobby',
      members: ['page-a', 'page-b'],
    });
    expect(out.presence).toHaveLength(3);
    const broadcast = { channel: '', offset: '', clientId: 'page-a', text: '"hello all"' };
    expect(out.a).toEqual([broadcast]);
    expect(out.b).toEqual([broadcast]);
  });

  it('a message over maxMessageSize is dropped and reported (HYP_E_WS_TOO_LARGE); the connection stays open', async () => {
    const out = await page.evaluate(([url, k]) => (globalThis as Win).hypApi!.tooLarge(url, k), [
      wsUrl,
      keys,
    ] as const);
    expect(out).toEqual({ errors: ['HYP_E_WS_TOO_LARGE'], closes: [], received: ['after'], connected: true });
  });

  it("a refused upgrade (403, another origin): a connect_error saying only 'handshake failed' before each 1006 close and reconnect; no error event, connect() waits until close()", async () => {
    // the page's origin is 127.0.0.1: a hub reached as localhost sees another host in Origin and answers 403
    const out = await page.evaluate(
      (url) => (globalThis as Win).hypApi!.refused(url),
      `ws://localhost:${sup!.httpPort}/ws`,
    );
    expect(out.connect).toBe('pending');
    // a browser shows a script neither the status nor the hub's answer
    expect(out.events).toEqual([
      'connect_error - - handshake failed',
      'close 1006',
      'reconnecting 1',
      'connect_error - - handshake failed',
      'close 1006',
      'reconnecting 2',
      'connect_error - - handshake failed',
      'close 1006',
      'reconnecting 3',
    ]);
    expect(out.errors).toEqual([]);
    expect(out.afterClose).toBe('rejected: connection closed before opening (close() called)');
  });

  it('close(1001), a code browsers refuse: a RangeError before anything changes; the client stays connected and usable', async () => {
    const out = await page.evaluate(([url, k]) => (globalThis as Win).hypApi!.closeCode(url, k), [
      wsUrl,
      keys,
    ] as const);
    expect(out).toEqual({ thrown: 'RangeError', ack: 'acked', connected: true });
  });
});
