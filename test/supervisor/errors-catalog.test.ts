/**
 * Every error or warning code the runtime, the supervisor or the client can
 * produce is in the catalog, so `hyp errors` lists it and users can look it up.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { catalog } from '../../supervisor/errors.js';
import { root } from '../helpers/supervisor.js';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('the error catalog', () => {
  it('holds every HYP_E_/HYP_W_ code the sources name', () => {
    const named = new Map<string, string>();
    for (const dir of ['apps', 'supervisor'])
      for (const file of sources(join(root, dir)))
        for (const [code] of readFileSync(file, 'utf8').matchAll(/\bHYP_[EW]_[A-Z0-9_]+\b/g))
          if (!named.has(code)) named.set(code, file.slice(root.length + 1));
    expect(named.size).toBeGreaterThan(50);
    const missing = [...named].filter(([code]) => !Object.hasOwn(catalog, code));
    expect(missing).toEqual([]);
  });
});
