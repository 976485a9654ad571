/**
 * A real supervisor through rolls (SIGUSR2), reloads (SIGHUP with a good and
 * a bad file) and worker crashes (SIGKILL, an app that exits), with HTTP,
 * WebSocket and TCP clients connected and reconnecting: its open fds, child
 * processes (no zombies) and /metrics series stay where they were, and a
 * SIGTERM drain leaves no PID file or other file behind. Counts with a small
 * fixed slack only; no timing assertions. The long runs (40 rolls and more)
 * are run by hand with the same figures.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { cli, collectLogLines, demoApp, type LogLine, type Status, until } from '../helpers/supervisor.js';

let proc: ChildProcess | undefined;
afterEach(() => {
  if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  proc = undefined;
});

function config(dir: string, extra = ''): string {
  return [
    'server:',
    '  addr: 127.0.0.1:0',
    'admin:',
    '  addr: 127.0.0.1:0',
    'supervisor:',
    '  workers: 2',
    `  pid_file: ${join(dir, 'hyp.pid')}`,
    '  backoff_initial: 50ms',
    'drain:',
    '  delay: 0s',
    '  timeout: 5s',
    '  websocket_spread: 100ms',
    'tcp:',
    '  echo:',
    '    addr: 127.0.0.1:0',
    // the demo's echo handler does not watch the drain: a roll would wait drain.timeout for it
    '    shutdown_timeout: 200ms',
    extra,
  ].join('\n');
}

/** The supervisor's children, live and zombie (state Z: exited, never reaped). */
function children(pid: number): { live: number; zombies: number } {
  const out = { live: 0, zombies: 0 };
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) !== pid) continue;
    if (state === 'Z') out.zombies++;
    else out.live++;
  }
  return out;
}

/** Series of a scrape by label: each label name's distinct values, and the series count (worker_id series apart). */
function seriesOf(text: string): { series: number; values: Record<string, number> } {
  const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#') && !l.includes('worker_id="'));
  const values: Record<string, Set<string>> = {};
  for (const line of lines)
    for (const [, name, value] of line.matchAll(/(\w+)="([^"]*)"/g)) {
      const seen = values[name!] ?? new Set<string>();
      seen.add(value!);
      values[name!] = seen;
    }
  return {
    series: lines.length,
    values: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.size])),
  };
}

/** Clients that stay connected through the rolls, reconnecting when a drain closes them. */
class Clients {
  private stopped = false;
  private readonly runs: Promise<void>[] = [];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 2 });
  answered = 0;
  wsOpened = 0;
  echoed = 0;

  constructor(httpPort: number, tcpPort: number) {
    this.runs.push(this.loop(() => this.http(httpPort)));
    this.runs.push(this.loop(() => this.ws(httpPort)));
    this.runs.push(this.loop(() => this.tcp(tcpPort)));
  }

  private async loop(one: () => Promise<void>): Promise<void> {
    // bounded: the spec stops it; every pass waits for a reply or a close
    for (let i = 0; i < 100_000 && !this.stopped; i++) {
      await one();
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private http(port: number): Promise<void> {
    return new Promise((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/api/ping', agent: this.agent }, (res) => {
        res.resume();
        res.on('end', () => {
          this.answered++;
          resolve();
        });
      });
      req.on('error', () => resolve());
      req.end();
    });
  }

  private ws(port: number): Promise<void> {
    return new Promise((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      ws.on('open', () => {
        this.wsOpened++;
        ws.send(JSON.stringify({ type: 'join_room', data: { room_id: 'lobby' } }));
      });
      const check = setInterval(() => {
        if (this.stopped) ws.close();
      }, 100);
      ws.on('close', () => {
        clearInterval(check);
        resolve();
      });
      ws.on('error', () => undefined);
    });
  }

  private tcp(port: number): Promise<void> {
    return new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      const tick = setInterval(() => {
        if (this.stopped) socket.end();
        else socket.write('x');
      }, 100);
      socket.on('data', () => this.echoed++);
      socket.on('close', () => {
        clearInterval(tick);
        resolve();
      });
      socket.on('error', () => undefined);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.runs);
    this.agent.destroy();
  }
}

describe('supervisor soak: rolls, reloads and crashes with clients connected', () => {
  it('fds, children and /metrics series stay put; the drain leaves no file behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    const file = join(dir, 'hyp.yaml');
    writeFileSync(file, config(dir));
    const child = spawn(process.execPath, [cli, 'run', demoApp, '--config', file], {
      cwd: dir,
      env: { ...process.env, HYP_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc = child;
    const logs: LogLine[] = [];
    collectLogLines(child.stdout!, logs);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const portOf = async (msg: string, listener?: string) =>
      Number(
        (
          await until(
            () => logs.find((l) => l.msg === msg && (listener === undefined || l.listener === listener)),
            `${msg} ${listener ?? ''}`,
          )
        ).port,
      );
    const adminPort = await portOf('admin server listening');
    const httpPort = await portOf('holding listener', 'http');
    const tcpPort = await portOf('holding listener', 'echo');
    const admin = async (path: string) => (await fetch(`http://127.0.0.1:${adminPort}${path}`)).text();
    const status = async () => JSON.parse(await admin('/status')) as Status;
    const settled = () =>
      until(
        async () => {
          const s = await status();
          const ok =
            s.ready &&
            s.workers.length === 2 &&
            s.workers.every((w) => w.state === 'ready') &&
            s.other_workers.length === 0;
          return ok ? s : undefined;
        },
        'two ready workers and no other',
        30_000,
      );
    const roll = async (signal: NodeJS.Signals) => {
      const before = (await status()).generation;
      child.kill(signal);
      await until(async () => ((await status()).generation > before ? true : undefined), `${signal} roll`);
      await settled();
    };
    const measure = async () => {
      await settled();
      return { fds: readdirSync(`/proc/${child.pid}/fd`).length, children: children(child.pid!) };
    };

    await settled();
    const clients = new Clients(httpPort, tcpPort);
    await until(
      () => (clients.answered > 5 && clients.wsOpened > 0 && clients.echoed > 0) || undefined,
      'clients',
    );
    // one roll first: what a first roll allocates once (timers, the metrics cache) is no leak
    await roll('SIGUSR2');
    const base = await measure();
    const baseSeries = seriesOf(await admin('/metrics'));

    for (let i = 0; i < 12; i++) await roll('SIGUSR2');
    writeFileSync(file, config(dir, 'log:\n  level: warn'));
    await roll('SIGHUP');
    writeFileSync(file, config(dir, 'log:\n  level: info'));
    await roll('SIGHUP');
    writeFileSync(file, config(dir, 'supervisor_typo: [\n'));
    await roll('SIGHUP');
    writeFileSync(file, config(dir));
    for (let i = 0; i < 2; i++) {
      const victim = (await settled()).workers[0]!;
      process.kill(victim.pid, 'SIGKILL');
      await until(
        async () => ((await status()).workers.some((w) => w.pid === victim.pid) ? undefined : true),
        'the killed worker replaced',
      );
    }
    const after = await measure();
    const afterSeries = seriesOf(await admin('/metrics'));
    await clients.stop();

    expect(clients.answered).toBeGreaterThan(0);
    expect(after.children).toEqual({ live: 2, zombies: 0 });
    expect(base.children).toEqual({ live: 2, zombies: 0 });
    // a few fds of slack: an admin connection of the scrape may still be open
    expect(after.fds).toBeLessThanOrEqual(base.fds + 3);
    // no series per generation, worker pid or connection: each label's values stay (a reason or status may appear)
    expect(afterSeries.series).toBeLessThanOrEqual(baseSeries.series + 40);
    for (const [label, n] of Object.entries(afterSeries.values))
      expect({ label, n }).toEqual({ label, n: Math.min(n, (baseSeries.values[label] ?? 0) + 3) });

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(readdirSync(dir)).toEqual(['hyp.yaml']);
  });
});
