import { HypError } from '../../../../supervisor/errors.js';

/**
 * The one error every decoder raises: `HYP_E_WS_DECODE` with the codec, a
 * precise detail and, where the decoder knows it, the byte offset.
 */
export function decodeError(codec: string, detail: string, offset?: number, cause?: unknown): HypError {
  const where = offset === undefined ? detail : `${detail} at byte ${offset}`;
  return new HypError('HYP_E_WS_DECODE', { codec, detail: where, offset }, cause ? { cause } : undefined);
}
