import { HypError } from '../../../../supervisor/errors.js';
import { type Envelope, envelope } from '../envelope.js';

/**
 * The one error every decoder raises: `HYP_E_WS_DECODE` with the codec, a
 * precise detail and, where the decoder knows them, the byte offset and the
 * key path of the field at fault (`path`: `timestamp`, `channel`, ...).
 */
export function decodeError(
  codec: string,
  detail: string,
  offset?: number,
  cause?: unknown,
  path?: string,
): HypError {
  const where = offset === undefined ? detail : `${detail} at byte ${offset}`;
  const params =
    path === undefined ? { codec, detail: where, offset } : { codec, detail: where, offset, path };
  return new HypError('HYP_E_WS_DECODE', params, cause ? { cause } : undefined);
}

/**
 * The fields of a refused frame that decoded on their own (a publish whose
 * `timestamp` is a string still has a readable `id`, `type` and `channel`).
 * The hub names them in the refusal so the client can tell which of its
 * requests it answers. Only a field that was read whole is here.
 */
export type ReadableFields = Partial<Pick<Envelope, 'type' | 'channel' | 'data' | 'id'>>;

const readable = new WeakMap<HypError, Envelope>();

/** `err`, remembering what of its frame was readable (nothing is kept when `fields` holds nothing). */
export function withReadable(err: HypError, fields: ReadableFields): HypError {
  if (fields.type || fields.channel || fields.id) readable.set(err, envelope(fields));
  return err;
}

/** What the frame refused with `err` still held readably, as an envelope; undefined when nothing. */
export function readableFields(err: unknown): Envelope | undefined {
  return err instanceof HypError ? readable.get(err) : undefined;
}

/** `read()`, or undefined when it throws: a field of a refused frame read on its own, which may be at fault too. */
export function orUndefined<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}
