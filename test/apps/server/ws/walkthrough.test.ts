/**
 * Claims of docs/websocket.md checked in a new user's walkthrough that no
 * other spec asserted: what counts toward `max_failures`, and the two types
 * of an error frame's `offset`.
 */
import { describe, expect, it } from 'vitest';
import { HubTestBed, json } from './helpers.js';

const bed = new HubTestBed();

describe('websocket hub, as the docs promise a new user', () => {
  it('invalid control messages are answered but not counted toward max_failures; decode failures are, for the connection’s life', async () => {
    await bed.serve(); // no security: the limit is the default, 5
    const c = await bed.connect('json');
    const controls = [
      '{"type":"subscribe","data":{"channel":5}}',
      '{"type":"join_room","data":{}}',
      '{"type":"publish","data":1}',
      '{"type":"publish","channel":"x","id":"a b"}',
      '{"type":"subscribe","data":"x"}',
    ];
    for (const frame of controls) c.ws.send(frame);
    await c.nextOf('error', controls.length);
    expect(c.of('error').map((e) => (json(e) as { code: string }).code)).toEqual([
      'HYP_E_WS_CONTROL',
      'HYP_E_WS_CONTROL',
      'HYP_E_WS_CONTROL',
      'HYP_E_WS_PUBLISH_ID',
      'HYP_E_WS_CONTROL',
    ]);
    // four undecodable frames, then a good one: the count is not reset
    for (const frame of ['{"type":', '[1]', '"x"', '{"type":5}']) c.ws.send(frame);
    await c.nextOf('error', controls.length + 4);
    c.subscribe('ok');
    await c.nextOf('subscribed');
    expect(c.closed).toBeUndefined();
    c.ws.send('nope');
    await c.until((x) => x.closed !== undefined);
    expect(c.closed).toEqual({ code: 1008, reason: 'too many invalid messages' });
  });

  it("an error frame's offset is the failing byte (a number) in HYP_E_WS_DECODE and the channel offset (a string) in HYP_E_WS_RECOVERY_FAILED", async () => {
    await bed.serve();
    const c = await bed.connect('json');
    c.ws.send('{"type":"x",}');
    const [decode] = await c.nextOf('error');
    expect(json(decode!)).toMatchObject({ code: 'HYP_E_WS_DECODE', offset: 12 });
    c.subscribe('news', 'garbage');
    const errors = await c.nextOf('error', 2);
    expect(json(errors[1]!)).toMatchObject({
      code: 'HYP_E_WS_RECOVERY_FAILED',
      offset: 'garbage',
      channel: 'news',
    });
    // the subscription happens either way
    await c.nextOf('subscribed');
  });
});
