/** Benchmark app for hyp: hello world and a JSON route through the router. */
import { defineApp } from '../../../apps/server/index.js';

export default defineApp((app) => {
  app.get('/', (c) => c.text('hello world'));
  app.get('/json', (c) => c.json({ hello: 'world' }));
});
