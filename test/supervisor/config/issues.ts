import { expect } from 'vitest';
import { ConfigError } from '../../../supervisor/config/load.js';

/** The issues of the ConfigError `fn` throws; fails the spec when it throws none, or something else. */
export function issuesOf(fn: () => unknown): ConfigError['issues'] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}
