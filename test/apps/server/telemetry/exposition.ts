/**
 * A strict reader of the Prometheus text exposition format, for specs that
 * check what a scrape gives Prometheus rather than a few expected lines.
 */
export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

/**
 * Parse the text exposition format strictly, as Prometheus' parser reads it,
 * and check what it leaves to the producer: HELP/TYPE once per family and
 * before its samples, samples grouped under their family, valid names,
 * escapes, no series twice, histograms with cumulative buckets, `+Inf`
 * equal to `_count`, and `_sum`/`_count` present.
 */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  const seen = new Set<string>();
  let current: Family | undefined;
  const family = (n: string) => {
    let f = families.get(n);
    if (f === undefined) {
      f = { name: n, type: 'untyped', help: '', samples: [] };
      families.set(n, f);
    } else if (f !== current) throw new Error(`family ${n} is not contiguous`);
    current = f;
    return f;
  };
  const owner = (sample: string): Family | undefined => {
    if (current === undefined) return undefined;
    if (sample === current.name) return current;
    const suffixes =
      current.type === 'histogram'
        ? ['_bucket', '_sum', '_count']
        : current.type === 'summary'
          ? ['_sum', '_count']
          : [];
    return suffixes.some((s) => sample === current!.name + s) ? current : undefined;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
    if (meta) {
      const [, kind, n, rest] = meta;
      if (!name.test(n!)) throw new Error(`bad metric name in ${line}`);
      const f = family(n!);
      if (f.samples.length > 0) throw new Error(`${kind} of ${n} after its samples`);
      if (kind === 'TYPE') {
        if (f.type !== 'untyped' || !/^(counter|gauge|histogram|summary|untyped)$/.test(rest ?? ''))
          throw new Error(`second or bad TYPE: ${line}`);
        f.type = rest!;
      } else {
        if (f.help !== '') throw new Error(`second HELP: ${line}`);
        if ((rest ?? '').replace(/\\[\\n]/g, '').includes('\\'))
          throw new Error(`bad escape in HELP: ${line}`);
        f.help = rest ?? ' ';
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    const [, sampleName, labelText, valueText] = m;
    const labels: Record<string, string> = {};
    let rest = labelText ?? '';
    while (rest !== '') {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!lm) throw new Error(`bad labels in ${JSON.stringify(line)}`);
      if (lm[1]! in labels) throw new Error(`label ${lm[1]} twice in ${line}`);
      labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(lm[0].length);
    }
    // prom-client writes NaN as `Nan`: Prometheus reads it (Go's ParseFloat ignores case).
    if (!/^(?:[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|[-+]?Inf|NaN|Nan)$/.test(valueText!))
      throw new Error(`bad value in ${line}`);
    const f = owner(sampleName!) ?? family(sampleName!);
    const key = `${sampleName}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`series twice: ${line}`);
    seen.add(key);
    f.samples.push({ name: sampleName!, labels, value: Number(valueText) });
  }
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let one = series.get(key);
    if (!one) {
      one = { buckets: [] };
      series.set(key, one);
    }
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: bucket without le`);
      one.buckets.push([le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), s.value]);
    } else if (s.name === `${f.name}_count`) one.count = s.value;
    else if (s.name === `${f.name}_sum`) one.sum = s.value;
    else throw new Error(`${f.name}: sample ${s.name} in a histogram`);
  }
  for (const [key, one] of series) {
    const sorted = [...one.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++)
      if (sorted[i]![1] < sorted[i - 1]![1]) throw new Error(`${f.name}${key}: buckets not cumulative`);
    const inf = sorted.at(-1);
    if (inf === undefined || inf[0] !== Number.POSITIVE_INFINITY)
      throw new Error(`${f.name}${key}: no +Inf bucket`);
    if (one.count === undefined || one.sum === undefined) throw new Error(`${f.name}${key}: no _count/_sum`);
    if (inf[1] !== one.count) throw new Error(`${f.name}${key}: +Inf ${inf[1]} != _count ${one.count}`);
  }
}

/** The value of one series, or undefined. */
export function seriesValue(
  families: Map<string, Family>,
  metric: string,
  labels: Record<string, string> = {},
) {
  for (const f of families.values())
    for (const s of f.samples)
      if (
        s.name === metric &&
        Object.keys(s.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      )
        return s.value;
  return undefined;
}
