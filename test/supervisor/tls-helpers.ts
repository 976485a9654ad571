/** What the supervisor's last-good-TLS specs share. */
import type { Config } from '../../supervisor/config/schema.js';
import { LastGoodTls } from '../../supervisor/tlscheck.js';
import { configWith } from '../apps/server/http/harness.js';
import { copyServerPair, type TestPki, tlsSets } from '../apps/server/tls/certs.js';

/** A supervisor's view: its config on a copy of pair one, its last good pair read from those files. */
export function holdingPairOne(pki: TestPki): {
  config: Config;
  good: LastGoodTls;
  pair: { cert: string; key: string };
} {
  const pair = copyServerPair(pki);
  const config = configWith(tlsSets(pair));
  const good = new LastGoodTls();
  good.refresh(config);
  return { config, good, pair };
}
