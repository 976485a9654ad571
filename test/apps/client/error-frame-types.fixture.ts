/**
 * Type-checked (strict) by error-frame-types.test.ts, never run: what
 * HypErrorFrame promises its readers. Each line here is code an application
 * writes; it must compile as it is.
 */
import { type HypErrorFrame, HypWebSocket } from '../../../apps/client/index.js';

declare function reload(channel: string): void;
declare function notify(code: string, message: string, channel: string | undefined): void;

const ws = new HypWebSocket('ws://127.0.0.1:1/ws');
ws.on('error', (e) => {
  // the codes that always carry a channel: no `!`
  if (e.code === 'HYP_E_WS_RECOVERY_FAILED') reload(e.channel);
  switch (e.code) {
    case 'HYP_E_WS_RECOVERY_BUSY':
      reload(e.channel);
      break;
    case 'HYP_E_WS_QUEUE_FULL':
      // one that may carry it
      notify(e.code, e.message, e.channel);
      break;
  }
  // what code written before reads: a code, a message, an optional channel and offset
  const code: string = e.code;
  const offset: number | string | undefined = e.offset;
  notify(code, e.message, e.channel);
  void offset;
});

export const frames: HypErrorFrame[] = [
  { code: 'HYP_E_WS_RECOVERY_FAILED', message: 'lost', channel: 'news', offset: 'e:1' },
  { code: 'HYP_E_WS_QUEUE_FULL', message: 'dropped' },
];
