import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { jsonSchema } from '../../../supervisor/config/load.js';

describe('hyp.schema.json', () => {
  it('is the JSON Schema the loader validates with (regenerate: npx hyp schema > hyp.schema.json)', () => {
    const committed = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', '..', '..', 'hyp.schema.json'), 'utf8'),
    );
    expect(committed).toEqual(jsonSchema());
  });
});
