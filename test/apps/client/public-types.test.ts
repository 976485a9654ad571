/**
 * hyp/client's public types, as a user's project sees them: small programs
 * in a scratch project that depends on hyp (linked to this repository, whose
 * dist/ `npm run build` left) are type-checked with tsc, strict. What the
 * docs tell users to write compiles without a cast: the `WebSocket` option
 * takes `ws`'s WebSocket (and a subclass adding headers) and the DOM's, a
 * payload may be any bytes the runtime takes (an ArrayBuffer, any view of
 * one), and `PublishAckError.code` is the catalog's code union.
 */
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkModules, scratchDir, typeCheck, writeConsumerPackage } from '../../helpers/consumer.js';
import { root } from '../../helpers/supervisor.js';

let project: string;

const programs: Record<string, string> = {
  // Node with the `ws` package (what the doc tells Node ≥ 22 users to pass), and a subclass adding headers
  'node-ws.ts': `
import { HypWebSocket } from 'hyp/client';
import { type ClientOptions, WebSocket } from 'ws';

const plain = new HypWebSocket('ws://127.0.0.1:8080/ws', { WebSocket });
class WithToken extends WebSocket {
  constructor(url: string, protocols?: string | string[], options?: ClientOptions) {
    super(url, protocols, { ...options, headers: { authorization: 'Bearer t' } });
  }
}
const withToken = new HypWebSocket('ws://127.0.0.1:8080/ws', { WebSocket: WithToken });
void plain;
void withToken;
`,
  // a page: the DOM's WebSocket, passed explicitly
  'browser-ws.ts': `
import { HypWebSocket } from 'hyp/client';

const ws = new HypWebSocket('wss://example.com/ws', { WebSocket: globalThis.WebSocket });
const ws2 = new HypWebSocket('wss://example.com/ws', { WebSocket });
void ws;
void ws2;
`,
  // bytes in every form the runtime sends as they are
  'payload.ts': `
import { HypWebSocket } from 'hyp/client';

const ws = new HypWebSocket('ws://127.0.0.1:8080/ws');
const buffer = new ArrayBuffer(4);
ws.publish('news', buffer);
ws.publish('news', new DataView(buffer));
ws.publish('news', new Int16Array(2));
ws.publish('news', new Uint8Array(buffer, 1, 2));
ws.publish('news', new SharedArrayBuffer(2));
ws.broadcast(new Float64Array(1));
ws.send('echo', buffer);
void ws.publishAck('news', new DataView(buffer));
// still JSON for everything else
ws.publish('news', { a: 1 });
ws.publish('news', [1, 'two']);
ws.publish('news', 'text');
`,
  'payload-node.ts': `
import { HypWebSocket } from 'hyp/client';

const ws = new HypWebSocket('ws://127.0.0.1:8080/ws');
ws.publish('news', Buffer.from('bytes'));
`,
  // PublishAckError.code: a typo in a comparison is a compile error
  'ack-code.ts': `
import { HypWebSocket, PublishAckError } from 'hyp/client';

const ws = new HypWebSocket('ws://127.0.0.1:8080/ws');
try {
  await ws.publishAck('orders', { item: 42 });
} catch (err) {
  if (err instanceof PublishAckError) {
    if (err.code === 'HYP_E_WS_ACK_TIMEOUT') console.log('timed out', err.channel, err.id);
    // @ts-expect-error not a catalog code (a typo)
    if (err.code === 'HYP_E_WS_ACK_TIMEOT') console.log('never');
  }
}
`,
  // send(): the hub's own request types do not compile as literals; any other string does
  'send-type.ts': `
import { HypWebSocket } from 'hyp/client';

const ws = new HypWebSocket('ws://127.0.0.1:8080/ws');
ws.send('chat', 'hi');
ws.send('', 'empty');
ws.send('publish', 'through send', 'news');
const chosen: string = 'chat';
ws.send(chosen, 'a string variable compiles; a reserved value throws at the call');
const kind = Math.random() > 0.5 ? 'chat' : 'typing';
ws.send(kind, 'a union of application types');
// @ts-expect-error the hub's request
ws.send('subscribe', 'x');
// @ts-expect-error the hub's request
ws.send('unsubscribe', 'x');
// @ts-expect-error the hub's request
ws.send('join_room', 'x');
// @ts-expect-error the hub's request
ws.send('leave_room', 'x');
// @ts-expect-error the hub's request
ws.send('presence', 'x');
const either = Math.random() > 0.5 ? 'chat' : 'join_room';
// @ts-expect-error a union holding one of them
ws.send(either, 'x');
`,
  'send-type-message.ts': `
import { HypWebSocket } from 'hyp/client';

new HypWebSocket('ws://127.0.0.1:8080/ws').send('join_room', 'x');
`,
};

beforeAll(() => {
  project = scratchDir('hyp-client-types-');
  writeConsumerPackage(project);
  mkdirSync(join(project, 'node_modules'));
  symlinkSync(root, join(project, 'node_modules', 'hyp'), 'dir');
  linkModules(project, ['ws', '@types/ws']);
  const src = join(project, 'src');
  mkdirSync(src);
  for (const [name, code] of Object.entries(programs)) writeFileSync(join(src, name), code);
});

afterAll(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

const node = {
  module: 'nodenext',
  moduleResolution: 'nodenext',
  lib: ['ES2023'],
  skipLibCheck: true,
  noEmit: true,
};

/** A page's project: the DOM, no Node types. */
const browser = {
  module: 'esnext',
  moduleResolution: 'bundler',
  lib: ['ES2023', 'DOM'],
  types: [],
  skipLibCheck: true,
  noEmit: true,
};

describe('hyp/client public types (tsc --strict, a user project)', () => {
  it('`WebSocket` from `ws`, and a subclass of it adding headers, is taken without a cast (Node)', () => {
    expect(typeCheck(project, 'node-ws', node, ['src/node-ws.ts']).output).toBe('');
  });

  it("the DOM's WebSocket is taken without a cast (a page, no Node types)", () => {
    expect(typeCheck(project, 'browser-ws', browser, ['src/browser-ws.ts']).output).toBe('');
  });

  it('a payload may be an ArrayBuffer, a SharedArrayBuffer or any view of one, as at runtime', () => {
    expect(typeCheck(project, 'payload', browser, ['src/payload.ts']).output).toBe('');
    expect(typeCheck(project, 'payload-node', node, ['src/payload-node.ts']).output).toBe('');
  });

  it('PublishAckError.code is the catalog’s code union: a typo does not compile', () => {
    expect(typeCheck(project, 'ack-code', node, ['src/ack-code.ts']).output).toBe('');
  });

  it("send(): a literal hub request type does not compile, and tsc's message names the method to use", () => {
    expect(typeCheck(project, 'send-type', node, ['src/send-type.ts']).output).toBe('');
    const refused = typeCheck(project, 'send-type-message', node, ['src/send-type-message.ts']);
    expect(refused.status).not.toBe(0);
    expect(refused.output).toContain('use joinRoom()');
  });

  // Failed while dist/apps/server/ws/envelope.d.ts declared its TextEncoder/TextDecoder
  // constants as import("util") types (inferred); they are typed by hand now.
  it('a page with skipLibCheck: false compiles against hyp/client (no Node types reached)', () => {
    const strict = { ...browser, skipLibCheck: false };
    expect(typeCheck(project, 'browser-strict', strict, ['src/browser-ws.ts', 'src/payload.ts']).output).toBe(
      '',
    );
  });
});
