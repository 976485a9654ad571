/**
 * pino loggers for both roles. Every line carries pid, role, worker id and
 * generation (child loggers add request ids and the like). JSON on stdout;
 * human-readable when stdout is a TTY, or when `log.format` says so.
 */
import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export interface LoggerOptions {
  role: 'supervisor' | 'worker' | 'cli';
  workerId?: number;
  generation?: number;
  level?: string;
  format?: 'auto' | 'json' | 'pretty';
}

export function createLogger(opts: LoggerOptions): Logger {
  const base: Record<string, unknown> = { pid: process.pid, role: opts.role };
  if (opts.workerId !== undefined) base.worker_id = opts.workerId;
  if (opts.generation !== undefined) base.generation = opts.generation;
  const format = opts.format ?? 'auto';
  const usePretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  const options = {
    level: opts.level ?? 'info',
    base,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    // An error's own message, its cause as an object of its own: the default
    // serializer appends the cause's message to the error's, which repeats
    // it when the message already quotes it (`app failed to start: boom: boom`).
    serializers: { err: pino.stdSerializers.errWithCause },
  };
  if (usePretty) {
    return pino(
      options,
      pretty({ colorize: true, sync: true, ignore: 'hostname', translateTime: 'SYS:HH:MM:ss.l' }),
    );
  }
  return pino(options, pino.destination({ fd: 1, sync: true }));
}
