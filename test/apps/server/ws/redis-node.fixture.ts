/**
 * A pod's worker for the Redis audit tests, as a real child process: one hub
 * on RedisBus + RedisHistory (REDIS_URL, REDIS_PREFIX) behind an HTTP server
 * on 127.0.0.1. It reports its port to the parent. A crash shows as the
 * process exiting.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RedisBus } from '../../../../apps/server/ws/bus.js';
import { createHub } from '../../../../apps/server/ws/hub.js';
import { RedisHistory } from '../../../../apps/server/ws/redis-history.js';

const url = process.env.REDIS_URL!;
const prefix = process.env.REDIS_PREFIX!;
const bus = new RedisBus({ url, prefix });
const sharedHistory = new RedisHistory({ url, prefix, size: 100 });
const hub = createHub({ bus, sharedHistory, ownTransports: true, pingIntervalMs: 0 });
const server = createServer();
server.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head));
await Promise.all([bus.ready(), sharedHistory.ready()]);
server.listen(0, '127.0.0.1', () => {
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));
