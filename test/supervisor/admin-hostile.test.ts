/**
 * The admin port against hostile peers, on a real supervisor: a half-sent
 * request is answered 408 with a code and closed, a flood of half-open
 * connections beyond the cap does not stop /health and /metrics from
 * answering, and a request Node's parser refuses gets JSON with a code.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

/** What a raw connection received before the server closed it. */
interface Closed {
  text: string;
  closedByServer: boolean;
}

function rawRequest(port: number, bytes: string, guardMs: number): Promise<Closed> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`admin port kept the connection open for ${guardMs} ms; got ${JSON.stringify(text)}`));
    }, guardMs);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(guard);
      resolve({ text, closedByServer: true });
    });
  });
}

/** Status and parsed JSON body of one HTTP/1.1 answer. */
function parseAnswer(text: string): { status: number; contentType: string; body: unknown } {
  const split = text.indexOf('\r\n\r\n');
  expect(split, `an HTTP answer, got ${JSON.stringify(text)}`).toBeGreaterThan(0);
  const head = text.slice(0, split);
  const status = Number(head.split(' ')[1]);
  const contentType = /^content-type:\s*(.*)$/im.exec(head)?.[1] ?? '';
  const raw = text.slice(split + 4);
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    body = raw;
  }
  return { status, contentType, body };
}

describe('admin server against hostile peers', () => {
  let sup: Running;
  beforeAll(async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1 });
  });
  afterAll(async () => {
    await sup?.stop();
  });

  it('a half-sent request is answered 408 HYP_E_REQUEST_TIMEOUT in JSON and closed', async () => {
    // The guard only ends a hang: Node's defaults hold such a request 60 s.
    const got = await rawRequest(sup.adminPort, 'GET /health HTTP/1.1\r\nhost: x\r\n', 30_000);
    expect(got.closedByServer).toBe(true);
    const answer = parseAnswer(got.text);
    expect(answer.status).toBe(408);
    expect(answer.contentType).toMatch(/^application\/json/);
    expect(answer.body).toMatchObject({ error: { code: 'HYP_E_REQUEST_TIMEOUT' } });
  }, 40_000);

  it('a request the parser refuses gets JSON with a code: 400 HYP_E_BAD_REQUEST, 431 HYP_E_HEADERS_TOO_LARGE', async () => {
    const bad = await rawRequest(
      sup.adminPort,
      'GET /health HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n',
      30_000,
    );
    const badAnswer = parseAnswer(bad.text);
    expect(badAnswer.status).toBe(400);
    expect(badAnswer.contentType).toMatch(/^application\/json/);
    expect(badAnswer.body).toMatchObject({ error: { code: 'HYP_E_BAD_REQUEST' } });
    expect((badAnswer.body as { error: { message: string } }).error.message).toMatch(
      /^malformed request: .*\(HPE_/,
    );

    const big = await rawRequest(
      sup.adminPort,
      `GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`,
      30_000,
    );
    const bigAnswer = parseAnswer(big.text);
    expect(bigAnswer.status).toBe(431);
    expect(bigAnswer.body).toMatchObject({ error: { code: 'HYP_E_HEADERS_TOO_LARGE' } });

    expect((await sup.admin('/health')).status).toBe(200);
  }, 40_000);

  it('a flood of half-open connections beyond the cap (256): the oldest are closed, /health and /metrics answer', async () => {
    const cap = 256;
    const flood = cap + 144;
    const sockets: Socket[] = [];
    // Closed with no answer: shed for the cap (a timeout answers 408 first).
    let shed = 0;
    try {
      for (let i = 0; i < flood; i++) {
        const socket = connect(sup.adminPort, '127.0.0.1');
        let answered = false;
        socket.on('data', () => {
          answered = true;
        });
        socket.on('error', () => {});
        socket.on('close', () => {
          if (!answered) shed++;
        });
        socket.write('GET /health HTTP/1.1\r\nhost: x\r\n');
        sockets.push(socket);
      }
      // Every connection of the flood is established before the probes come.
      await until(
        () => sockets.every((s) => s.readyState === 'open' || s.destroyed),
        'the flood connected',
        20_000,
      );
      // Beyond the cap, each new connection closes the oldest half-sent one.
      await until(() => shed >= flood - cap, `${flood - cap} flood connections shed`, 20_000);

      const health = await sup.admin('/health');
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok' });
      const metrics = await sup.admin('/metrics');
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/^# (HELP|TYPE) /m);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 60_000);
});
