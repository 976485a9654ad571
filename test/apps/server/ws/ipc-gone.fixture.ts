/**
 * A worker whose supervisor has gone: once its IPC channel closes it
 * publishes on the IPC bus and the pod-wide history and asks for a
 * recovery, then reports on stdout whether it is still alive.
 */
import { IpcBus } from '../../../../apps/server/ws/bus.js';
import { IpcHistory } from '../../../../apps/server/ws/ipc-history.js';

const bus = new IpcBus(process, 7);
const history = new IpcHistory({ topic: '/ws', timeoutMs: 200 });
const message = {
  type: 'message',
  channel: 'c',
  data: new Uint8Array([1]),
  timestamp: 1n,
  clientId: '',
  offset: '',
};
process.on('disconnect', () => {
  bus.publish('/ws', new Uint8Array([1]));
  history.publish('c', message);
  history.recover('c', '1-1').then(
    () => console.log('recover resolved'),
    (err: Error) => console.log(`recover rejected: ${err.message}`),
  );
  setTimeout(() => {
    console.log('alive');
    process.exit(0);
  }, 300);
});
process.send?.({ type: 'up' });
