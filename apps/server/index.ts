/** Public API of hyp's application runtime. */
export { type App, type AppContext, type AppDefinition, type AppSetup, defineApp, type Handler } from './app.js';
export { Context } from './context.js';
export { HypError, type ErrorCode, catalog } from '../../supervisor/errors.js';
