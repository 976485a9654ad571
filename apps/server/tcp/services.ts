/**
 * The worker's side of TCP services: match the app's `app.tcp(name, …)`
 * registrations with the `tcp.<name>` config sections, create one
 * `TcpService` per name, listen on the supervisor's fd named after it (or
 * bind in standalone mode), and drain them together.
 */
import type { Registry } from 'prom-client';
import { type Config, reservedListenerNames } from '../../../supervisor/config/schema.js';
import { HypError } from '../../../supervisor/errors.js';
import type { TicketKeys } from '../../../supervisor/ipc.js';
import type { Logger } from '../../../supervisor/log.js';
import { type ListenTarget, TcpService } from './server.js';
import type { TcpHandler, TcpRegistration, TcpServiceOptions } from './types.js';

export { type ListenTarget, TcpService, type TcpServiceInit } from './server.js';
export { type IdleSweeper, idleSweeper } from './sweeper.js';
export type { TcpTls } from './tls.js';

export interface TcpServicesInit {
  registrations: ReadonlyMap<string, TcpRegistration>;
  config: Config;
  log: Logger;
  registry: Registry;
  /** Session-ticket keys received from the supervisor so far (TLS services). */
  ticketKeys?: TicketKeys | undefined;
}

/**
 * One service per registration. A registered name without `tcp.<name>.addr`
 * is an operator error (HYP_E_TCP_UNKNOWN_SERVICE); a configured name that
 * the app does not register is left alone (the supervisor holds its socket;
 * the worker answers nothing on it) and only worth a warning.
 */
export function createTcpServices(init: TcpServicesInit): TcpService[] {
  const { registrations, config, log, registry } = init;
  const services: TcpService[] = [];
  for (const [name, reg] of registrations) {
    const section = config.tcp[name];
    if (section === undefined || !section.addr) throw new HypError('HYP_E_TCP_UNKNOWN_SERVICE', { name });
    services.push(
      new TcpService({
        name,
        config: section,
        handler: reg.handler,
        options: reg.options,
        log,
        registry,
        // The supervisor sends its keys right after `config`, before the services exist:
        // without them a TLS service seals tickets with per-worker keys until the first rotation.
        ticketKeys: init.ticketKeys,
      }),
    );
  }
  for (const name of Object.keys(config.tcp)) {
    if (!registrations.has(name))
      log.warn({ tcp_service: name }, `tcp.${name} is configured but the app registers no handler for it`);
  }
  return services;
}

/**
 * Listen on every service: the inherited fd named like the service when the
 * supervisor passed one (`fds`, from LISTEN_FDNAMES), else bind `tcp.<name>.addr`.
 */
export async function listenTcpServices(
  services: readonly TcpService[],
  fds: ReadonlyMap<string, number>,
): Promise<void> {
  await Promise.all(
    services.map((service) => {
      const fd = fds.get(service.name);
      const target: ListenTarget | undefined = fd === undefined ? undefined : { fd };
      return service.listen(target);
    }),
  );
}

export async function drainTcpServices(services: readonly TcpService[], deadline: number): Promise<void> {
  await Promise.all(services.map((s) => s.drain(deadline)));
}

const namePattern = /^[a-z][a-z0-9-]*$/;

/** `app.tcp(name, handler, options)`: validate and record one registration. */
export function registerTcpService<S extends object>(
  into: Map<string, TcpRegistration>,
  name: string,
  handler: TcpHandler<S>,
  options: TcpServiceOptions<S> = {},
): void {
  if (typeof name !== 'string' || !namePattern.test(name)) {
    throw new HypError('HYP_E_TCP_INVALID_OPTION', {
      name: String(name),
      option: 'name',
      detail: 'expected lowercase letters, digits and dashes, starting with a letter',
    });
  }
  if (reservedListenerNames.has(name)) {
    throw new HypError('HYP_E_TCP_INVALID_OPTION', {
      name,
      option: 'name',
      detail: `${name} is a reserved listener name`,
    });
  }
  if (typeof handler !== 'function') throw new HypError('HYP_E_TCP_INVALID_HANDLER', { name });
  if (into.has(name)) throw new HypError('HYP_E_TCP_DUPLICATE_SERVICE', { name });
  // Stored type-erased: the worker only hands each handler connections built with its own `state()`.
  into.set(name, { name, handler, options } as unknown as TcpRegistration);
}
