/**
 * A real HAProxy in front of the "pods", playing the Service/Ingress. Backends
 * are slots of a server-template, filled and emptied through the runtime API
 * (as an endpoints controller would), never by reloading. WebSocket upgrades
 * pass through (`timeout tunnel`), and every response names the backend
 * address it came from (`X-Hyp-E2E-Server: <ip>:<port>`), which `podAt` maps
 * back to the pod: that is how the harness knows where a WebSocket client is
 * connected.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

const slots = 16;

/** Response header naming the backend address that answered. */
export const serverHeader = 'X-Hyp-E2E-Server';

export class HaproxyService {
  private readonly proc: ChildProcess;
  private readonly socket: string;
  private readonly used = new Map<string, number>();
  /** Every backend address ever added → its pod (published ports are unique while pods live). */
  private readonly pods = new Map<string, string>();
  private exited = false;
  log = '';

  private constructor(
    dir: string,
    readonly port: number,
  ) {
    this.socket = join(dir, 'haproxy.sock');
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global
  stats socket ${this.socket} mode 600 level admin
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout tunnel 1h

frontend service
  bind 127.0.0.1:${port}
  default_backend pods

backend pods
  balance roundrobin
  http-response set-header ${serverHeader} "%si:%sp"
  server-template pod 1-${slots} 127.0.0.1:9 disabled
`,
    );
    this.proc = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    this.proc.stdout?.on('data', keep);
    this.proc.stderr?.on('data', keep);
    this.proc.on('exit', () => {
      this.exited = true;
    });
  }

  static async start(dir: string, port: number): Promise<HaproxyService> {
    const lb = new HaproxyService(dir, port);
    for (let i = 0; i < 100; i++) {
      if (lb.exited) throw new Error(`haproxy exited at start:\n${lb.log}`);
      try {
        await lb.command('show info');
        return lb;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`haproxy runtime socket never answered:\n${lb.log}`);
  }

  command(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const sock = connect(this.socket);
      let out = '';
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        out += d;
      });
      sock.on('end', () => resolve(out.trim()));
      sock.on('error', reject);
      sock.end(`${line}\n`);
    });
  }

  /** The endpoints controller adds a ready pod. */
  async addEndpoint(name: string, port: number): Promise<void> {
    const taken = new Set(this.used.values());
    let slot = 1;
    while (taken.has(slot)) slot++;
    if (slot > slots) throw new Error('no free haproxy slot');
    this.used.set(name, slot);
    this.pods.set(`127.0.0.1:${port}`, name);
    await this.expectEmpty(`set server pods/pod${slot} addr 127.0.0.1 port ${port}`, /changed|no need/i);
    await this.expectEmpty(`set server pods/pod${slot} state ready`);
  }

  /** The endpoints controller removes a pod (not ready, or terminating). */
  async removeEndpoint(name: string): Promise<void> {
    const slot = this.used.get(name);
    if (slot === undefined) return;
    this.used.delete(name);
    await this.expectEmpty(`set server pods/pod${slot} state maint`);
  }

  /** The pod behind a backend address as given in the `X-Hyp-E2E-Server` header. */
  podAt(address: string): string | undefined {
    return this.pods.get(address);
  }

  endpoints(): string[] {
    return [...this.used.keys()];
  }

  private async expectEmpty(line: string, ok?: RegExp): Promise<void> {
    const answer = await this.command(line);
    if (answer !== '' && !ok?.test(answer)) throw new Error(`haproxy: ${line}: ${answer}`);
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await done;
  }
}
