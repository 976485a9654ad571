/**
 * The client library in a real browser: Debian's Chromium driven by
 * playwright-core loads a page from a real supervisor (2 workers), connects
 * with msgpack and AES-256-GCM + HMAC-SHA256 (WebCrypto), subscribes,
 * receives what Node publishes through the same library on the `ws` package,
 * is refused when it seals with the wrong keys, and reconnects to the new
 * generation after a rolling restart.
 *
 * Chromium missing: the suite fails on CI (.ci/run installs it) and is skipped
 * with a message elsewhere.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { HypWebSocket, type SocketConstructor } from '../../apps/client/index.js';
import { fixtureApp, type Running, root, startSupervisor, until } from '../helpers/supervisor.js';
import { bundleHarness } from './bundle.js';
import { chromiumPath, haveChromium, openPage } from './chromium.js';
import type { Harness, HarnessKeys, HarnessState, RawRefusal } from './harness.js';

const runHere = haveChromium || Boolean(process.env.CI);
if (!runHere) {
  console.warn(
    `skipping the Chromium client test: ${chromiumPath} not found (apt-get install -y chromium to run it; on CI it is required)`,
  );
}

const channel = 'news';
const aesKey = randomBytes(32);
const hmacKey = randomBytes(32);
const keys: HarnessKeys = { aes: aesKey.toString('hex'), hmac: hmacKey.toString('hex') };

let dir: string | undefined;
let sup: Running | undefined;
let browser: Browser | undefined;
let page: Page;
let publisher: HypWebSocket | undefined;
let wsUrl: string;

type Win = { hypHarness?: Harness };

const pageState = () => page.evaluate(() => (globalThis as Win).hypHarness!.state());

/** Texts the page received that start with `prefix`. */
async function receivedWith(prefix: string): Promise<string[]> {
  return (await pageState()).received.filter((t) => t.startsWith(prefix));
}

/** Publishes probes until the page has one: the page's (re)subscription is live on every worker. */
async function probe(tag: string): Promise<number> {
  let sent = 0;
  await until(
    async () => {
      publisher!.publish(channel, `${tag}-${sent++}`);
      await new Promise((r) => setTimeout(r, 100));
      return (await receivedWith(tag)).length > 0 || undefined;
    },
    `the page to receive a ${tag} message`,
    20_000,
  );
  return sent;
}

/** Publishes `count` numbered messages and returns what the page received of them once all arrived. */
async function publishNumbered(tag: string, count: number): Promise<string[]> {
  for (let i = 0; i < count; i++) publisher!.publish(channel, `${tag}-${i}`);
  return until(
    async () => {
      const got = await receivedWith(`${tag}-`);
      return got.length >= count ? got : undefined;
    },
    `${count} ${tag} messages in the page`,
    20_000,
  );
}

const numbered = (tag: string, count: number) => Array.from({ length: count }, (_, i) => `${tag}-${i}`);

describe.runIf(runHere)('client library in Chromium (msgpack + AES-256-GCM/HMAC-SHA256)', () => {
  beforeAll(async () => {
    if (!haveChromium) {
      throw new Error(
        `${chromiumPath} not found: CI must install Debian's chromium (apt-get install -y chromium, as .ci/run does)`,
      );
    }
    if (!existsSync(fixtureApp('browser'))) {
      throw new Error(`${fixtureApp('browser')} not found: build first (npx tsc -p .)`);
    }
    dir = mkdtempSync(join(tmpdir(), 'hyp-browser-'));
    const bundle = await bundleHarness(root, dir);
    console.log(
      `browser bundle: ${(bundle.bytes / 1024).toFixed(0)} KiB from ${bundle.inputs.length} inputs`,
    );
    writeFileSync(join(dir, 'aes.key'), aesKey);
    writeFileSync(join(dir, 'hmac.key'), hmacKey);
    sup = await startSupervisor({
      app: fixtureApp('browser'),
      workers: 2,
      sets: [
        `websocket.security.aes_key_file=${join(dir, 'aes.key')}`,
        `websocket.security.hmac_key_file=${join(dir, 'hmac.key')}`,
        'drain.websocket_spread=500ms',
      ],
      env: { HYP_TEST_BROWSER_BUNDLE: bundle.file },
    });
    const origin = `http://127.0.0.1:${sup.httpPort}`;
    wsUrl = `ws://127.0.0.1:${sup.httpPort}/ws`;
    ({ browser, page } = await openPage(`${origin}/`, 'hypHarness'));

    publisher = new HypWebSocket(wsUrl, {
      codec: 'msgpack',
      clientId: 'node-publisher',
      security: { aesKey, hmacKey },
      WebSocket: WebSocket as unknown as SocketConstructor,
      reconnect: { initialDelayMs: 100, maxDelayMs: 1000 },
    });
    await publisher.connect();
  }, 120_000);

  afterAll(async () => {
    publisher?.close();
    await browser?.close();
    await sup?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('subscribes from the page and receives, in order and once each, what Node publishes', async () => {
    await page.evaluate(([url, k, ch]) => (globalThis as Win).hypHarness!.start(url, k, ch), [
      wsUrl,
      keys,
      channel,
    ] as const);
    const first = await pageState();
    expect(first.codec).toBe('msgpack');
    expect(first.connected).toBe(true);

    await probe('probe');
    expect(await publishNumbered('live', 50)).toEqual(numbered('live', 50));
    expect((await pageState()).errors).toEqual([]);
  });

  it('is refused by the hub when it seals with keys the hub does not know', async () => {
    const clientError = await page.evaluate(
      ([url, ch]) => (globalThis as Win).hypHarness!.wrongKeyClient(url, ch),
      [wsUrl, channel] as const,
    );
    // the hub refuses the frame and answers with an error frame sealed under its own keys,
    // which the wrong-key client cannot open either: an error event either way
    expect(['HYP_E_WS_DECRYPT', 'HYP_E_WS_SIGNATURE']).toContain(clientError.code);

    const raw: RawRefusal = await page.evaluate(
      ([url, k, ch]) => (globalThis as Win).hypHarness!.rawWrongKeyFrame(url, k, ch),
      [wsUrl, keys, channel] as const,
    );
    expect(raw).toEqual({ protocol: 'msgpack', code: 'HYP_E_WS_DECRYPT' });

    // a later message arrives; the forged ones never did
    await publishNumbered('after-forgery', 1);
    const texts = (await pageState()).received;
    expect(texts.filter((t) => t.includes('forged'))).toEqual([]);
  });

  it('reconnects to the new generation after a rolling restart and receives what is published afterwards', async () => {
    const before = await sup!.status();
    const oldPids = new Set(before.workers.map((w) => w.pid));
    const s0: HarnessState = await pageState();

    const restart = sup!.admin('/restart?wait=1', { method: 'POST', signal: AbortSignal.timeout(60_000) });
    // the old worker closes the page with 1001 and a reconnect hint while it drains
    await until(
      async () => ((await pageState()).closes.length > s0.closes.length ? true : undefined),
      'the 1001 close',
      30_000,
    );
    // published while the page is away, by the hub itself on whichever worker answers
    const published = await fetch(
      `http://127.0.0.1:${sup!.httpPort}/api/publish?channel=${channel}&prefix=away&count=10`,
      {
        method: 'POST',
        signal: AbortSignal.timeout(30_000),
      },
    );
    expect(published.status).toBe(200);
    const awayWhileClosed = !(await pageState()).connected;
    const body = (await (await restart).json()) as { ok: boolean; generation: number };
    expect(body).toMatchObject({ ok: true, generation: before.generation + 1 });

    const after = await sup!.waitFor((s) => s.other_workers.length === 0, 'the old generation gone');
    expect(after.workers.every((w) => !oldPids.has(w.pid))).toBe(true);
    await until(
      async () => ((await pageState()).connected ? true : undefined),
      'the page to reconnect',
      30_000,
    );

    const s1 = await pageState();
    const close = s1.closes[s0.closes.length];
    expect(close?.code).toBe(1001);
    expect(close?.reason).toMatch(/^reconnect;delay=\d+$/);
    expect(s1.opens).toBeGreaterThan(s0.opens);

    const probes = await probe('reprobe');
    expect(await publishNumbered('post', 50)).toEqual(numbered('post', 50));

    const s2 = await pageState();
    const away = s2.received.filter((t) => t.startsWith('away-'));
    const newErrors = s2.errors.slice(s0.errors.length);
    console.log(
      `rolling restart: page closed with ${close?.code} "${close?.reason}", reopened ${s2.opens - s0.opens}×, ` +
        `${probes} probe(s) until the resubscription was live; ${away.length}/10 messages published while away ` +
        `(page still closed when the publish returned: ${awayWhileClosed}) arrived; errors after reconnect: ${JSON.stringify(newErrors.map((e) => e.code))}`,
    );
    // any error after the reconnect is the explicit "recovery failed", never a security or decode failure
    for (const e of newErrors) expect(e.code).toBe('HYP_E_WS_RECOVERY_FAILED');
    // what was published while away arrives once each, in order — or recovery failed explicitly
    if (newErrors.length === 0) expect(away).toEqual(numbered('away', 10));
    else expect(away).toEqual(numbered('away', 10).filter((t) => away.includes(t)));
  }, 120_000);

  it('reconnects after its worker is killed and receives what is published afterwards', async () => {
    const before = await sup!.status();
    const s0 = await pageState();
    // kill every worker: whichever one holds the page's connection dies without a close frame
    for (const w of before.workers) process.kill(w.pid, 'SIGKILL');
    await until(
      async () => ((await pageState()).closes.length > s0.closes.length ? true : undefined),
      'the page to notice the dead connection',
      30_000,
    );
    await sup!.waitFor(
      (s) =>
        s.workers.length === before.workers.length &&
        s.workers.every((w) => w.state === 'ready' && !before.workers.some((o) => o.pid === w.pid)),
      'replacement workers ready',
    );
    await until(
      async () => ((await pageState()).connected ? true : undefined),
      'the page to reconnect',
      30_000,
    );

    const probes = await probe('killprobe');
    expect(await publishNumbered('revived', 50)).toEqual(numbered('revived', 50));

    const s1 = await pageState();
    const close = s1.closes[s0.closes.length];
    expect(close?.code).toBe(1006);
    const newErrors = s1.errors.slice(s0.errors.length);
    console.log(
      `worker killed: page closed with ${close?.code}, ${s1.reconnecting - s0.reconnecting} reconnect attempt(s), ` +
        `reopened ${s1.opens - s0.opens}×, ${probes} probe(s) until the resubscription was live; ` +
        `errors after reconnect: ${JSON.stringify(newErrors.map((e) => e.code))}`,
    );
    for (const e of newErrors) expect(e.code).toBe('HYP_E_WS_RECOVERY_FAILED');
  }, 120_000);
});
