/**
 * A misspelt key reads the same whether it came from the file or from --set
 * (README quotes the --set line), and the hidden value is described in
 * correct English (first-hour audit).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../supervisor/config/load.js';

function lines(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).lines();
  }
  throw new Error('expected a ConfigError');
}

function project(yaml: string): string {
  const d = mkdtempSync(join(tmpdir(), 'hyp-cfg-'));
  writeFileSync(join(d, 'hyp.yaml'), yaml);
  return d;
}

describe('an unknown key', () => {
  it('from the file is described as from --set: expected a known config key (did you mean ...?)', () => {
    const [fromFile] = lines(() => loadConfig({ env: {}, cwd: project('server:\n  adr: ":1"\n') }));
    const [fromSet] = lines(() => loadConfig({ env: {}, cwd: project(''), sets: ['server.adr=:1'] }));
    const expected = (line: string | undefined) => line?.slice(line.indexOf(', expected '));
    expect(fromSet).toContain('expected a known config key (did you mean server.addr?)');
    expect(expected(fromFile)).toBe(expected(fromSet));
  });

  it('with a value of one: "a string of 1 character", "a list of 1 item", "a section of 1 key"', () => {
    const out = lines(() =>
      loadConfig({ env: {}, cwd: project('server:\n  adr: x\n  prots: [a]\n  tlss: { a: 1 }\n') }),
    ).join('\n');
    expect(out).toContain('got a string of 1 character (not shown');
    expect(out).toContain('got a list of 1 item (not shown');
    expect(out).toContain('got a section of 1 key (not shown');
  });
});
