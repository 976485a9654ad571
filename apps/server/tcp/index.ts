/** Public API of hyp's raw TCP services (re-exported by the package root). */
export type { TcpConnection } from './connection.js';
export {
  encodeFrame,
  encodeLine,
  LengthPrefixDecoder,
  type LengthPrefixOptions,
  LineDecoder,
  type LineOptions,
  readFrames,
  readLines,
  writeFrame,
  writeLine,
} from './framing.js';
export type { ConnState, TcpHandler, TcpNetwork, TcpServiceOptions, TcpServiceState } from './types.js';
