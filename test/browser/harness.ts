/**
 * The page side of the Chromium test: bundled with the client library
 * (apps/client) for the browser and exposed as `globalThis.hypHarness`, so the
 * test drives it with `page.evaluate` and reads back what the page saw.
 */
import {
  ClientSecurity,
  type HypErrorFrame,
  type HypMessage,
  HypWebSocket,
} from '../../apps/client/index.js';
import { codecByName } from '../../apps/server/ws/codecs/index.js';
import { envelope, nowNs, utf8Decoder, utf8Encoder } from '../../apps/server/ws/envelope.js';

export interface HarnessKeys {
  /** Hex of the raw AES-256 key (32 bytes). */
  aes: string;
  /** Hex of the raw HMAC-SHA256 key. */
  hmac: string;
}

export interface HarnessState {
  /** Payloads (JSON strings unquoted) delivered on the subscribed channel, in arrival order. */
  received: string[];
  errors: HypErrorFrame[];
  opens: number;
  closes: Array<{ code: number; reason: string }>;
  reconnecting: number;
  connected: boolean;
  codec: string;
}

export interface RawRefusal {
  /** The subprotocol the hub chose for the raw socket. */
  protocol: string;
  /** The code in the hub's error frame, opened with the right keys. */
  code: string;
}

export interface Harness {
  /** Connects the subscriber (msgpack, sealed) and subscribes to `channel`. */
  start(url: string, keys: HarnessKeys, channel: string): Promise<void>;
  state(): HarnessState;
  /** A HypWebSocket with keys the hub does not know: resolves with its first error event. */
  wrongKeyClient(url: string, channel: string): Promise<HypErrorFrame>;
  /** Sends one msgpack publish sealed under wrong keys over a raw WebSocket and reads the hub's answer. */
  rawWrongKeyFrame(url: string, keys: HarnessKeys, channel: string): Promise<RawRefusal>;
  stop(): void;
}

function hex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function keysOf(k: HarnessKeys) {
  return { aesKey: hex(k.aes), hmacKey: hex(k.hmac) };
}

function randomKeys() {
  return {
    aesKey: crypto.getRandomValues(new Uint8Array(32)),
    hmacKey: crypto.getRandomValues(new Uint8Array(32)),
  };
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`page: timed out waiting for ${what}`)), ms),
    ),
  ]);

/** A JSON string payload as the string itself, anything else as its text. */
function payloadText(m: HypMessage): string {
  try {
    const v = m.json();
    return typeof v === 'string' ? v : m.text();
  } catch {
    return m.text();
  }
}

let subscriber: HypWebSocket | undefined;
const state: HarnessState = {
  received: [],
  errors: [],
  opens: 0,
  closes: [],
  reconnecting: 0,
  connected: false,
  codec: '',
};

const harness: Harness = {
  async start(url, keys, channel) {
    const ws = new HypWebSocket(url, {
      codec: 'msgpack',
      clientId: 'browser',
      security: keysOf(keys),
      reconnect: { initialDelayMs: 100, maxDelayMs: 1000 },
    });
    subscriber = ws;
    state.codec = ws.codec.name;
    ws.on('open', () => {
      state.opens++;
      state.connected = true;
    });
    ws.on('close', (code, reason) => {
      state.connected = false;
      state.closes.push({ code, reason });
    });
    ws.on('reconnecting', () => state.reconnecting++);
    ws.on('error', (e) => state.errors.push(e));
    ws.subscribe(channel, (m) => state.received.push(payloadText(m)));
    await withTimeout(ws.connect(), 10_000, 'the first open');
  },

  state: () => ({
    ...state,
    received: [...state.received],
    errors: [...state.errors],
    closes: [...state.closes],
  }),

  wrongKeyClient(url, channel) {
    const ws = new HypWebSocket(url, {
      codec: 'msgpack',
      clientId: 'intruder',
      security: randomKeys(),
      reconnect: { enabled: false },
    });
    const first = new Promise<HypErrorFrame>((resolve) => ws.on('error', resolve));
    ws.subscribe(channel);
    ws.publish(channel, 'forged');
    return withTimeout(
      ws.connect().then(() => first),
      10_000,
      'an error event on the wrong-key client',
    ).finally(() => ws.close());
  },

  async rawWrongKeyFrame(url, keys, channel) {
    const codec = codecByName('msgpack');
    if (!codec) throw new Error('page: msgpack codec missing from the bundle');
    const forged = await new ClientSecurity(randomKeys()).seal(
      codec.marshal(
        envelope({ type: 'publish', channel, data: utf8Encoder.encode('"forged-raw"'), timestamp: nowNs() }),
      ),
    );
    const right = new ClientSecurity(keysOf(keys));
    const ws = new WebSocket(url, ['msgpack']);
    ws.binaryType = 'arraybuffer';
    const answer = new Promise<RawRefusal>((resolve, reject) => {
      ws.onopen = () => ws.send(forged);
      ws.onerror = () => reject(new Error('page: raw socket error'));
      ws.onmessage = async (event) => {
        try {
          const m = codec.unmarshal(await right.open(new Uint8Array(event.data as ArrayBuffer)));
          const body = JSON.parse(utf8Decoder.decode(m.data)) as { code?: string };
          resolve({ protocol: ws.protocol, code: m.type === 'error' ? (body.code ?? '') : `type ${m.type}` });
        } catch (err) {
          reject(err);
        }
      };
    });
    return withTimeout(answer, 10_000, "the hub's answer to a forged frame").finally(() => ws.close());
  },

  stop() {
    subscriber?.close();
  },
};

(globalThis as { hypHarness?: Harness }).hypHarness = harness;
