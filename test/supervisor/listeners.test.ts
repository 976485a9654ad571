/**
 * Held listeners: bound but not polled; the backlog survives worker exits.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isHypError } from '../../supervisor/errors.js';
import { holdListener } from '../../supervisor/listeners.js';

const listenersJs = fileURLToPath(new URL('../../dist/supervisor/listeners.js', import.meta.url));

/** A child that serves one `hello` per connection on fd 3, then exits when told. */
const serveFd3 = `
const net = require('node:net');
const s = net.createServer((c) => c.end('hello from ' + process.pid));
s.listen({ fd: 3 }, () => process.send('ready'));
process.on('message', () => process.exit(0));
`;

function child(fd: number) {
  const p = spawn(process.execPath, ['-e', serveFd3], { stdio: ['ignore', 'inherit', 'inherit', fd, 'ipc'] });
  const ready = new Promise<void>((r) => p.once('message', () => r()));
  return { p, ready };
}

function read(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let data = '';
    s.on('data', (d) => {
      data += d;
    });
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
}

describe('holdListener', () => {
  it('a connection made while no worker runs waits in the backlog and is served by the next worker', async () => {
    const held = await holdListener('http', '127.0.0.1:0');
    try {
      const first = child(held.fd);
      await first.ready;
      expect(await read(held.port)).toMatch(/hello from \d+/);
      first.p.send('exit');
      await new Promise((r) => first.p.once('exit', r));
      // No worker now: the connect still completes (backlog), the answer waits.
      const pending = read(held.port);
      const second = child(held.fd);
      await second.ready;
      expect(await pending).toBe(`hello from ${second.p.pid}`);
      second.p.send('exit');
      await new Promise((r) => second.p.once('exit', r));
    } finally {
      held.close();
    }
  });

  it('refuses an address in use with HYP_E_LISTEN naming the listener', async () => {
    const blocker = occupiedPort();
    const port = await blocker.port;
    try {
      const err = await holdListener('http', `127.0.0.1:${port}`).catch((e: unknown) => e);
      expect(isHypError(err, 'HYP_E_LISTEN')).toBe(true);
      expect(String((err as Error).message)).toMatch(/http.*EADDRINUSE/);
    } finally {
      blocker.server.close();
    }
  });

  it('a port below 1024 without the right to bind it: HYP_E_LISTEN says what is needed', async () => {
    // As a user without CAP_NET_BIND_SERVICE: a root test run drops to
    // nobody once the module is loaded.
    const script = `
      const { holdListener } = await import(${JSON.stringify(pathToFileURL(listenersJs).href)});
      if (process.getuid() === 0) { process.setgid(65534); process.setuid(65534); }
      await holdListener('http', '127.0.0.1:81').then(
        () => console.log('bound'),
        (err) => console.log(err.code + ' ' + err.message),
      );`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(out.trim()).toBe(
      'HYP_E_LISTEN cannot bind listener http on 127.0.0.1:81: EACCES: ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port >= 1024 (the chart maps the Service port to it)',
    );
  });

  it('an address no interface has: HYP_E_LISTEN says so', async () => {
    // 192.0.2.0/24 is TEST-NET-1: never assigned, so bind fails locally and nothing is sent.
    const err = await holdListener('http', '192.0.2.1:8080').catch((e: unknown) => e);
    expect(isHypError(err, 'HYP_E_LISTEN')).toBe(true);
    expect((err as Error).message).toBe(
      'cannot bind listener http on 192.0.2.1:8080: EADDRNOTAVAIL: no interface of this host has that address',
    );
  });

  it('holds a UDP socket without reading it; a worker receives on the inherited fd', async () => {
    const held = await holdListener('h3', '127.0.0.1:0', 'udp');
    try {
      const code = `
        const d = require('node:dgram').createSocket('udp4');
        d.on('message', (m) => { process.send(String(m)); });
        d.bind({ fd: 3 }, () => process.send('ready'));
        process.on('disconnect', () => process.exit(0));`;
      const p = spawn(process.execPath, ['-e', code], {
        stdio: ['ignore', 'inherit', 'inherit', held.fd, 'ipc'],
      });
      const messages: string[] = [];
      const ready = new Promise<void>((r) =>
        p.on('message', (m) => (m === 'ready' ? r() : messages.push(String(m)))),
      );
      await ready;
      const sender = createSocket('udp4');
      await new Promise<void>((r) => sender.send('ping', held.port, '127.0.0.1', () => r()));
      const deadline = Date.now() + 5000;
      while (messages.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      sender.close();
      p.kill();
      expect(messages).toEqual(['ping']);
    } finally {
      held.close();
    }
  });
});

function occupiedPort() {
  const server = createServer();
  const port = new Promise<number>((r) =>
    server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)),
  );
  return { server, port };
}
