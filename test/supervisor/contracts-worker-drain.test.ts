/**
 * ARCHITECTURE.md §4, drain inside a worker, HTTP/1.1, under the real
 * supervisor: at a rolling restart the old worker answers its in-flight
 * request with `Connection: close`, closes an idle keep-alive connection
 * (so it need not wait for drain.timeout), and exits 0 on its own.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await sup?.stop();
  sup = undefined;
});

/** A keep-alive HTTP/1.1 connection that records what it receives and how it ended. */
function client(port: number) {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  const state = { data: '', ended: false, error: undefined as string | undefined };
  socket.on('data', (d) => {
    state.data += d;
  });
  socket.on('end', () => {
    state.ended = true;
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    state.error = err.code ?? err.message;
  });
  const send = (path: string) => socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`);
  return { socket, state, send };
}

describe('contract §4: HTTP/1.1 drain at a rolling restart', () => {
  it('the in-flight request is answered with Connection: close, the idle keep-alive connection is closed, the old worker exits 0 long before drain.timeout', async () => {
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 1,
      sets: ['drain.timeout=120s'],
    });
    const old = (await sup.status()).workers[0]!.pid;
    const idle = client(sup.httpPort);
    idle.send('/api/ping');
    await until(() => idle.state.data.endsWith('pong') || undefined, 'first answer on the idle connection');
    expect(idle.state.data.toLowerCase()).not.toContain('connection: close');

    const busy = client(sup.httpPort);
    busy.send('/api/slow?ms=2000');
    await sup.waitFor((s) => s.workers[0]!.inflight === 1, 'request in flight');

    const roll = (await (await sup.admin('/restart?wait=1', { method: 'POST' })).json()) as { ok: boolean };
    expect(roll.ok).toBe(true);

    await until(() => (idle.state.ended ? true : undefined), 'the idle connection closed by the server');
    expect(idle.state.error).toBeUndefined();
    await until(() => (busy.state.ended ? true : undefined), 'the in-flight request answered, then closed');
    expect(busy.state.data).toMatch(/^HTTP\/1\.1 200 /);
    expect(busy.state.data.toLowerCase()).toContain('connection: close');
    expect(busy.state.error).toBeUndefined();

    const exited = await sup.waitLog(
      (l) => l.msg === 'worker exited' && l.worker_pid === old,
      'old worker exited',
    );
    expect(exited.exit).toBe('code 0');
    expect(sup.logs.filter((l) => l.level === 'error')).toEqual([]);
  });
});
