/**
 * Shared setup of the supervisor relay specs (ipc-relay-*.test.ts): a pod and
 * what a test opens on it, all ended after each test; raw `ws` clients of the
 * ws-relay fixtures' hub (channel `flood`); the relay's metrics; a fake IPC
 * channel for a worker's IpcFlow.
 */
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach } from 'vitest';
import { WebSocket } from 'ws';
import type { IpcChannel } from '../../apps/server/ws/bus.js';
import { loadConfig } from '../../supervisor/config/load.js';
import { WorkerProcess } from '../../supervisor/worker-process.js';
import { type Running, type StartOptions, startSupervisor, until } from '../helpers/supervisor.js';
import type { TestClient } from './ws-helpers.js';

export const mib = 1024 * 1024;

/** A raw `ws` client (JSON codec) of a ws-relay fixture hub, so the test decides how fast it sends. */
export interface RelayClient {
  readonly ws: WebSocket;
  /** The pid of the worker it reached (the fixture greets with it). */
  readonly pid: number;
  /** The ids of the `flood` deliveries it got (none kept without `keepIds`). */
  readonly ids: string[];
  /** How many `flood` deliveries it got. */
  deliveries(): number;
  /** Publishes `{ id, pad }` on `flood`; `{ id }` without a pad. */
  publish(id: string, pad?: string): void;
}

/** What one relay spec starts and opens; `relayPod()` ends all of it after each test. */
export interface RelayPod {
  /** Pids the test SIGSTOPped: they get SIGCONT first, so the pod can stop them. */
  readonly stopped: number[];
  /** TestClients to close. */
  readonly clients: TestClient[];
  /** Starts the supervisor for this test. */
  start(options: StartOptions): Promise<Running>;
  /** Connects a RelayClient, subscribed to `flood` (ack awaited) if `subscribe`; after the greeting. */
  client(port: number, subscribe: boolean, keepIds?: boolean): Promise<RelayClient>;
  /**
   * A WorkerProcess outside any pod whose child only reads its IPC channel
   * (while it runs), spending `busyMs` on each message, after one heartbeat
   * unless `silent`.
   */
  idleWorker(relayStallMs: number, busyMs?: number, silent?: boolean): WorkerProcess;
}

/** Registers the teardown of a relay spec file; call once, at its top level. */
export function relayPod(): RelayPod {
  let sup: Running | undefined;
  const stopped: number[] = [];
  const clients: TestClient[] = [];
  const sockets: WebSocket[] = [];
  const workers: WorkerProcess[] = [];
  afterEach(async () => {
    for (const pid of stopped.splice(0)) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {}
    }
    for (const c of clients.splice(0)) c.close();
    for (const ws of sockets.splice(0)) ws.terminate();
    await sup?.stop();
    sup = undefined;
    for (const w of workers.splice(0)) {
      if (w.state === 'exited') continue;
      w.kill('test over');
      await w.exited;
    }
  });

  return {
    stopped,
    clients,
    async start(options) {
      sup = await startSupervisor(options);
      return sup;
    },
    async client(port, subscribe, keepIds = true) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      sockets.push(ws);
      const ids: string[] = [];
      let deliveries = 0;
      let pid = 0;
      let acked = false;
      ws.on('message', (data) => {
        const text = String(data);
        if (text.startsWith('{"type":"message","channel":"flood"')) {
          deliveries++;
          if (keepIds) ids.push(/"id":"([^"]*)"/.exec(text)![1]!);
        } else if (text.startsWith('{"type":"message","data":{"pid"'))
          pid = (JSON.parse(text) as { data: { pid: number } }).data.pid;
        else if (text.startsWith('{"type":"subscribed"')) acked = true;
      });
      await once(ws, 'open');
      if (subscribe)
        ws.send(
          `{"type":"subscribe","data":{"channel":"flood"},"timestamp":${Date.now()}000000,"client_id":""}`,
        );
      await until(
        () => (pid && (acked || !subscribe) ? true : undefined),
        subscribe ? 'the greeting and the subscribe ack' : 'the greeting',
      );
      return {
        ws,
        pid,
        ids,
        deliveries: () => deliveries,
        publish(id, pad) {
          const data = pad === undefined ? `{"id":"${id}"}` : `{"id":"${id}","pad":"${pad}"}`;
          ws.send(
            `{"type":"publish","channel":"flood","data":${data},"timestamp":${Date.now()}000000,"client_id":""}`,
          );
        },
      };
    },
    idleWorker(relayStallMs, busyMs = 0, silent = false) {
      const dir = mkdtempSync(join(tmpdir(), 'ipc-relay-idle-'));
      const entry = join(dir, 'idle.cjs');
      const heartbeat =
        "{ type: 'heartbeat', connections: 0, inflight: 0, wsClients: 0, rss: 0, loopDelayMs: 0 }";
      writeFileSync(
        entry,
        `${silent ? '' : `process.send(${heartbeat});\n`}process.on('message', () => { const end = performance.now() + ${busyMs}; while (performance.now() < end); });\n`,
      );
      const { config } = loadConfig({ env: {}, sets: [], cwd: dir });
      const worker = new WorkerProcess({
        id: 1,
        slot: 0,
        generation: 1,
        entry,
        app: entry,
        config,
        listeners: [],
        log: pino({ level: 'silent' }),
        relayStallMs,
      });
      workers.push(worker);
      return worker;
    },
  };
}

/** The value of `series` on the pod's /metrics, if it is there. */
export async function metric(s: Running, series: string): Promise<number | undefined> {
  const text = await (await s.admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/**
 * A fake IPC channel: the test plays the supervisor's messages and Node's
 * write callbacks (`writeAll`), unless `writeAtOnce` (each send written as it
 * is made).
 */
export function fakeChannel({ writeAtOnce = false }: { writeAtOnce?: boolean } = {}) {
  const listeners: Array<(message: unknown) => void> = [];
  const callbacks: Array<(err: Error | null) => void> = [];
  let accept = true;
  const channel: IpcChannel = {
    send(_message, written) {
      if (writeAtOnce) written?.(null);
      else callbacks.push(written!);
      return accept;
    },
    connected: true,
    on: (_event, listener) => listeners.push(listener),
    off: () => undefined,
  };
  return {
    channel,
    fromSupervisor: (message: unknown) => {
      for (const l of listeners) l(message);
    },
    stopSending: () => {
      accept = false;
    },
    writeAll: () => {
      for (const written of callbacks.splice(0)) written(null);
    },
  };
}
