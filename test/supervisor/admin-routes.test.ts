/**
 * The admin server's answers to wrong methods and bad query strings, and its
 * resilience to runtime server errors: clear catalog errors, never a silent
 * misreading, never a supervisor that falls over.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminServer } from '../../supervisor/admin.js';
import type { Supervisor } from '../../supervisor/supervisor.js';
import { fixtureApp, type Running, startSupervisor } from '../helpers/supervisor.js';

describe('admin routes against a running supervisor', () => {
  let sup: Running;
  beforeAll(async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1 });
  });
  afterAll(async () => {
    await sup?.stop();
  });

  it('a known route with the wrong method: 405 HYP_E_METHOD_NOT_ALLOWED and an Allow header', async () => {
    const cases: Array<[string, string, string]> = [
      ['PUT', '/health', 'GET, HEAD'],
      ['GET', '/restart', 'POST'],
      ['DELETE', '/drain', 'GET, POST'],
      ['POST', '/metrics', 'GET'],
      ['POST', '/status?x=1', 'GET'],
    ];
    for (const [method, path, allow] of cases) {
      const res = await sup.admin(path, { method });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 405 });
      expect(res.headers.get('allow')).toBe(allow);
      expect(await res.json()).toMatchObject({
        error: {
          code: 'HYP_E_METHOD_NOT_ALLOWED',
          message: `method ${method} not allowed for ${path.split('?')[0]}`,
        },
      });
    }
    const unknown = await sup.admin('/nope');
    expect(unknown.status).toBe(404);
    expect((await sup.status()).state).toBe('ready');
  });

  it('POST /restart with a wait value it does not understand: 400 naming wait, and no roll', async () => {
    for (const query of ['wait=garbage', 'wait=10', 'wait=']) {
      const res = await sup.admin(`/restart?${query}`, { method: 'POST' });
      expect({ query, status: res.status }).toEqual({ query, status: 400 });
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('HYP_E_BAD_REQUEST');
      expect(body.error.message).toMatch(/wait/);
    }
    const s = await sup.status();
    expect(s.generation).toBe(1);
    expect(s.other_workers).toEqual([]);
  });

  it('POST /restart?wait=0 does not wait; wait=true waits for the new generation', async () => {
    const noWait = await sup.admin('/restart?wait=0', { method: 'POST' });
    expect(noWait.status).toBe(202);
    const waited = await sup.admin('/restart?wait=true', { method: 'POST' });
    expect(waited.status).toBe(200);
    expect(await waited.json()).toMatchObject({ ok: true });
  });
});

describe('the admin server process', () => {
  it('survives runtime errors of its listening socket (EMFILE on accept) and keeps answering', async () => {
    const logged: unknown[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    const fakeSup = { state: 'ready' } as unknown as Supervisor;
    const admin = new AdminServer(fakeSup, log);
    const { port } = await admin.listen('127.0.0.1:0');
    try {
      // What Node's net.Server emits when accept() fails, e.g. out of file descriptors.
      const emfile = () => Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
      expect(() => admin.server.emit('error', emfile())).not.toThrow();
      expect(() => admin.server.emit('error', emfile())).not.toThrow();
      expect(logged.length).toBe(2);
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      expect(res.status).toBe(200);
    } finally {
      await admin.close();
    }
  });
});
