/**
 * HTTP/2 settings from config: advertised to clients; out-of-range frame
 * sizes are a config error naming the key.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closeSession, configWith, connect2, type Served, serve } from './harness.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('server.http2 settings', () => {
  it('advertises max_concurrent_streams (default 250) and max_frame_size', async () => {
    served = await serve([]);
    let session = await connect2(`http://127.0.0.1:${served.port}`);
    expect(session.remoteSettings).toMatchObject({ maxConcurrentStreams: 250, maxFrameSize: 16_384 });
    await closeSession(session);
    await served.close();

    served = await serve(['server.http2.max_concurrent_streams=10', 'server.http2.max_frame_size=1048576']);
    session = await connect2(`http://127.0.0.1:${served.port}`);
    expect(session.remoteSettings).toMatchObject({ maxConcurrentStreams: 10, maxFrameSize: 1_048_576 });
    await closeSession(session);
  });

  it.each([
    ['16383', 'below 16 KiB'],
    ['16777216', 'above 16 MiB - 1'],
  ])('max_frame_size=%s (%s) is a config error naming the key', (value) => {
    expect(() => configWith([`server.http2.max_frame_size=${value}`])).toThrow(
      /server\.http2\.max_frame_size/,
    );
  });
});
