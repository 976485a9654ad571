/** Test helper: serve an App on 127.0.0.1 with a real node:http server. */
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { App, type AppOptions } from '../../../apps/server/app.js';

export interface Served {
  app: App;
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function serve(setup: (app: App) => void, options: AppOptions = {}): Promise<Served> {
  const app = new App(options);
  setup(app);
  const server = createServer(app.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    app,
    server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The `error` member of a problem body. */
export async function problem(res: Response): Promise<{ code: string; message: string }> {
  return ((await res.json()) as { error: { code: string; message: string } }).error;
}

/**
 * Raw bytes on a fresh connection to `url`'s port (for request lines fetch
 * cannot send); resolves with everything the server sent before it closed.
 */
export function rawExchange(url: string, request: string | Buffer): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      out += d;
    });
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
    socket.write(request);
  });
}
