import type { Codec, CodecName } from './codec.js';
import { flatbuffersCodec } from './flatbuffers.js';
import { jsonCodec } from './json.js';
import { msgpackCodec } from './msgpack.js';
import { protobufCodec } from './protobuf.js';

export type { ChannelRequest, Codec, CodecName, RoomRequest } from './codec.js';
export { decodeError, type ReadableFields, readableFields } from './decode-error.js';
export { flatbuffersCodec, jsonCodec, msgpackCodec, protobufCodec };

/** All codecs by index: json 0, protobuf 1, flatbuffers 2, msgpack 3. */
export const codecs: readonly Codec[] = [jsonCodec, protobufCodec, flatbuffersCodec, msgpackCodec];

export const codecNames: readonly CodecName[] = codecs.map((c) => c.name);

export function codecByName(name: string): Codec | undefined {
  return codecs.find((c) => c.name === name);
}

/**
 * Picks the subprotocol for a `Sec-WebSocket-Protocol` offer: the first
 * offered name the hub enables. `undefined` means "answer without a
 * subprotocol and speak JSON" (none or only unknown names offered), as HypGo.
 */
export function negotiate(
  offered: Iterable<string>,
  enabled: readonly CodecName[] = codecNames,
): Codec | undefined {
  for (const name of offered) {
    const codec = codecByName(name.trim());
    if (codec && enabled.includes(codec.name)) return codec;
  }
  return undefined;
}
