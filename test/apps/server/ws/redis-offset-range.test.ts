import { describe, expect, it } from 'vitest';
import { RedisHistory } from '../../../../apps/server/ws/redis-history.js';
import { fakeLog, HubTestBed, json } from './helpers.js';
import { type RedisProcess, redisBinary, redisForSuite } from './redis-server.js';

/**
 * A Redis stream id is two unsigned 64-bit integers. A resume offset beyond
 * that (a typo, a pod history's offset, whose epoch is ≥ 2^64, or a client
 * probing) used to reach Redis, which refused it: the client got "shared
 * history unavailable" with Redis's error text and the script's hash, and
 * the worker logged a warning with a stack per subscribe. It is a bad
 * offset, refused before Redis is asked.
 */

const redisServer = redisBinary();
let prefixCounter = 0;
const bed = new HubTestBed();

type ErrorBody = { code: string; message: string; channel?: string; offset?: string };

describe.skipIf(!redisServer)('resume offsets a Redis stream cannot hold (real redis-server)', () => {
  let redis: RedisProcess;
  redisForSuite(redisServer!, (server) => {
    redis = server;
  });

  it('are HYP_E_WS_RECOVERY_FAILED naming the offset and why, with no Redis error text and no log line; the subscription stands', async () => {
    const log = fakeLog();
    const history = new RedisHistory({
      url: redis.url,
      prefix: `range${process.pid}-${++prefixCounter}`,
      size: 10,
    });
    const served = await bed.serve({ sharedHistory: history, log, ownTransports: true });
    const c = await bed.connect('json');
    c.send({ type: 'publish', channel: 'c0', data: Buffer.from('1') });
    const offsets = [
      '18446744073709551616-0',
      '0-18446744073709551616',
      '99999999999999999999999-1',
      `${'1'.repeat(5000)}-0`,
    ];
    offsets.forEach((offset, i) => {
      c.subscribe(`c${i}`, offset);
    });
    await c.until(
      (x) => x.of('error').length === offsets.length && x.of('subscribed').length === offsets.length,
    );
    const errors = c.of('error').map((m) => json(m) as ErrorBody);
    errors.forEach((e, i) => {
      expect(e.code).toBe('HYP_E_WS_RECOVERY_FAILED');
      expect(e.channel).toBe(`c${i}`);
      expect(e.offset).toBe(offsets[i]);
      expect(e.message).toMatch(/not a Redis stream id/);
      expect(e.message).not.toMatch(/ERR|unavailable|f_[0-9a-f]{40}|script/i);
    });
    expect(log.warn).not.toHaveBeenCalled();
    expect(log.error).not.toHaveBeenCalled();
    expect(served.hub.subscribers('c0')).toBe(1);
  });

  it('the largest stream id is in the future (nothing can follow it), not an error of Redis', async () => {
    const log = fakeLog();
    const history = new RedisHistory({
      url: redis.url,
      prefix: `range${process.pid}-${++prefixCounter}`,
      size: 10,
    });
    await bed.serve({ sharedHistory: history, log, ownTransports: true });
    const c = await bed.connect('json');
    c.send({ type: 'publish', channel: 'news', data: Buffer.from('1') });
    const max = '18446744073709551615-18446744073709551615';
    c.subscribe('news', max);
    const [error] = await c.nextOf('error');
    const e = json(error!) as ErrorBody;
    expect(e.code).toBe('HYP_E_WS_RECOVERY_FAILED');
    expect(e.offset).toBe(max);
    expect(e.message).toMatch(/in the future/);
    expect(log.warn).not.toHaveBeenCalled();
  });

  it('a valid offset still resumes', async () => {
    const history = new RedisHistory({
      url: redis.url,
      prefix: `range${process.pid}-${++prefixCounter}`,
      size: 10,
    });
    await bed.serve({ sharedHistory: history, ownTransports: true });
    const c = await bed.connect('json');
    c.subscribe('news', '');
    const [ack] = await c.nextOf('subscribed');
    c.send({ type: 'publish', channel: 'news', data: Buffer.from('"after"') });
    await c.nextOf('message');
    const r = await bed.connect('json');
    r.subscribe('news', ack!.offset);
    const [m] = await r.nextOf('message');
    expect(json(m!)).toBe('after');
  });
});
