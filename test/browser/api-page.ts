/**
 * The page side of client-api.test.ts: bundled with the client library for
 * the browser and exposed as `globalThis.hypApi`. Each function runs one
 * scenario of docs/websocket.md's Client library section in the page and
 * returns what the application saw, as plain JSON.
 */
import { type HypErrorFrame, HypWebSocket, PublishAckError } from '../../apps/client/index.js';

export interface PageKeys {
  /** Hex of the raw AES-256 key. */
  aes: string;
  /** Hex of the raw HMAC-SHA256 key. */
  hmac: string;
}

export interface AckOutcome {
  offset: string;
  refusal: { isPublishAckError: boolean; code: string; channel: string; idMatches: boolean };
  errorEvents: string[];
}

export interface RoomOutcome {
  /** `{event, room_id, client_id}` or `{room_id, members}` as `a` saw them. */
  presence: unknown[];
  /** Deliveries each client saw: channel, offset, publisher, text. */
  a: Array<{ channel: string; offset: string; clientId: string; text: string }>;
  b: Array<{ channel: string; offset: string; clientId: string; text: string }>;
}

export interface TooLargeOutcome {
  errors: string[];
  closes: number[];
  received: string[];
  connected: boolean;
}

export interface RefusedOutcome {
  /** 'pending' while connect() still waits. */
  connect: string;
  events: string[];
  errors: HypErrorFrame[];
  /** What the pending connect() settled with once close() was called. */
  afterClose: string;
}

export interface CloseCodeOutcome {
  /** The name of what `close(1001)` threw. */
  thrown: string;
  /** A publishAck after it: 'acked' or the rejection's code. */
  ack: string;
  connected: boolean;
}

export interface Api {
  acknowledged(url: string, keys: PageKeys): Promise<AckOutcome>;
  rooms(url: string, keys: PageKeys): Promise<RoomOutcome>;
  tooLarge(url: string, keys: PageKeys): Promise<TooLargeOutcome>;
  refused(url: string): Promise<RefusedOutcome>;
  closeCode(url: string, keys: PageKeys): Promise<CloseCodeOutcome>;
}

function hex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}

const security = (k: PageKeys) => ({ aesKey: hex(k.aes), hmacKey: hex(k.hmac) });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every 20 ms for at most `ms`: the page's own bounded wait. */
async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  for (let waited = 0; !check(); waited += 20) {
    if (waited >= ms) throw new Error(`page: timed out waiting for ${what}`);
    await sleep(20);
  }
}

const api: Api = {
  async acknowledged(url, keys) {
    const ws = new HypWebSocket(url, { codec: 'msgpack', clientId: 'page-acker', security: security(keys) });
    const errorEvents: string[] = [];
    ws.on('error', (e) => errorEvents.push(e.code));
    try {
      await ws.connect();
      const { offset } = await ws.publishAck('orders', { item: 42 }, { timeoutMs: 10_000 });
      const long = 'n'.repeat(2000); // over the hub's 1024-character name limit
      const err = await ws.publishAck(long, 1, { id: 'page-1', timeoutMs: 10_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const refusal = {
        isPublishAckError: err instanceof PublishAckError,
        code: (err as PublishAckError).code,
        channel: (err as PublishAckError).channel === long ? 'the long one' : 'another',
        idMatches: (err as PublishAckError).id === 'page-1',
      };
      return { offset, refusal, errorEvents };
    } finally {
      ws.close();
    }
  },

  async rooms(url, keys) {
    const seen = (ws: HypWebSocket) => {
      const list: RoomOutcome['a'] = [];
      ws.on('message', (m) =>
        list.push({ channel: m.channel, offset: m.offset, clientId: m.clientId, text: m.text() }),
      );
      return list;
    };
    const a = new HypWebSocket(url, { codec: 'json', clientId: 'page-a', security: security(keys) });
    const b = new HypWebSocket(url, { codec: 'protobuf', clientId: 'page-b', security: security(keys) });
    const presence: unknown[] = [];
    a.on('presence', (m) => presence.push(m.json()));
    const fromA = seen(a);
    const fromB = seen(b);
    try {
      await a.connect();
      await b.connect();
      a.joinRoom('lobby');
      await until(() => presence.length >= 1, "a's own join");
      b.joinRoom('lobby');
      await until(() => presence.length >= 2, "b's join");
      a.presence('lobby');
      await until(() => presence.length >= 3, 'the member list');
      a.broadcast('hello all');
      await until(() => fromA.length >= 1 && fromB.length >= 1, 'the broadcast on both');
      return { presence, a: fromA, b: fromB };
    } finally {
      a.close();
      b.close();
    }
  },

  async tooLarge(url, keys) {
    const ws = new HypWebSocket(url, { maxMessageSize: 2000, security: security(keys) });
    const errors: string[] = [];
    const closes: number[] = [];
    const received: string[] = [];
    ws.on('error', (e) => errors.push(e.code));
    ws.on('close', (code) => closes.push(code));
    ws.subscribe('big', (m) => received.push(m.json<string>().slice(0, 10)));
    try {
      await ws.connect();
      await until(() => ws.offset('big') !== undefined, 'the subscription ack');
      ws.publish('big', 'x'.repeat(5000));
      ws.publish('big', 'after');
      await until(() => received.length >= 1, 'the message after the large one');
      return { errors, closes, received, connected: ws.connected };
    } finally {
      ws.close();
    }
  },

  async refused(url) {
    const ws = new HypWebSocket(url, { reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    const events: string[] = [];
    const errors: HypErrorFrame[] = [];
    ws.on('connect_error', (e) =>
      events.push(`connect_error ${e.status ?? '-'} ${e.code ?? '-'} ${e.message}`),
    );
    ws.on('close', (code) => events.push(`close ${code}`));
    ws.on('reconnecting', (attempt) => events.push(`reconnecting ${attempt}`));
    ws.on('error', (e) => errors.push(e));
    let state = 'pending';
    const connecting = ws.connect().then(
      () => 'resolved',
      (e: Error) => `rejected: ${e.message}`,
    );
    void connecting.then((s) => {
      state = s;
    });
    await until(() => events.filter((e) => e.startsWith('reconnecting')).length >= 3, 'three attempts');
    const connect = state;
    ws.close();
    const afterClose = await connecting;
    return { connect, events: events.slice(0, 9), errors, afterClose };
  },

  async closeCode(url, keys) {
    const ws = new HypWebSocket(url, { security: security(keys) });
    try {
      await ws.connect();
      let thrown = 'nothing';
      try {
        ws.close(1001, 'going away'); // a code browsers refuse
      } catch (e) {
        thrown = (e as Error).name;
      }
      const ack = await ws.publishAck('orders', 1, { timeoutMs: 10_000 }).then(
        () => 'acked',
        (e: PublishAckError) => e.code,
      );
      return { thrown, ack, connected: ws.connected };
    } finally {
      ws.close();
    }
  },
};

(globalThis as { hypApi?: Api }).hypApi = api;
