/**
 * Debian's Chromium for the browser specs, driven by playwright-core: the
 * binary, and a page loaded from a URL until the script it serves has set
 * its global (the page's errors in the failure when it never does).
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';

export const chromiumPath = '/usr/bin/chromium';
export const haveChromium = existsSync(chromiumPath);

/** Launch Chromium headless, open `url`, wait until `globalThis[name]` is set. */
export async function openPage(url: string, name: string): Promise<{ browser: Browser; page: Page }> {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(url);
  await page
    .waitForFunction((global) => (globalThis as Record<string, unknown>)[global] !== undefined, name, {
      timeout: 10_000,
    })
    .catch(async (err: Error) => {
      await browser.close();
      throw new Error(`the page did not set ${name}: ${err.message}; page errors: ${pageErrors.join('; ')}`);
    });
  return { browser, page };
}
