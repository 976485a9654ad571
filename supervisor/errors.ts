/**
 * The error catalog: every error hyp raises has a stable code, a message
 * template and, where it meets the outside world, an exit code (CLI,
 * supervisor) or an HTTP status (admin server, application runtime).
 *
 * Users switch on `err.code`; the README lists the table (`hyp errors`
 * prints it too). Codes are contracts: never rename one, add a new one.
 */

export interface CatalogEntry {
  /** Message template; `{name}` placeholders are filled from `params`. */
  readonly message: string;
  /** Process exit code when this error ends a process. */
  readonly exit?: number;
  /** HTTP status when this error answers a request. */
  readonly status?: number;
}

export const catalog = {
  // configuration and start-up (exit 2: the operator must fix something)
  HYP_E_CONFIG_INVALID: { message: 'invalid configuration at {path}: {detail}', exit: 2 },
  HYP_E_CONFIG_FILE: { message: 'cannot read config file {file}: {detail}', exit: 2 },
  HYP_E_CONFIG_PARSE: { message: 'config file {file} is not valid YAML: {detail}', exit: 2 },
  HYP_E_CONFIG_SET: { message: 'bad --set argument {arg}: expected key.path=value', exit: 2 },
  HYP_E_PIDFILE_DIR: { message: 'PID file directory {dir} is not writable: {detail}', exit: 2 },
  HYP_E_PIDFILE_LIVE: {
    message:
      'PID file {file} names a running hyp supervisor (pid {pid}); stop it first or choose another supervisor.pid_file',
    exit: 2,
  },
  HYP_E_LISTEN: { message: 'cannot bind listener {name} on {addr}: {detail}', exit: 2 },
  HYP_E_LISTEN_FDS: { message: 'socket activation: {detail}', exit: 2 },
  HYP_E_ADDRESS_INVALID: { message: 'invalid address {addr}: {detail}', exit: 2 },
  HYP_E_APP_NOT_FOUND: { message: 'app module {file} cannot be loaded: {detail}', exit: 2 },
  HYP_E_APP_INVALID: { message: 'app module {file} must export default defineApp(...): {detail}', exit: 2 },
  HYP_E_TLS_FILE: { message: 'TLS file {file} ({key}) is unusable: {detail}', exit: 2 },
  HYP_E_TLS_MISMATCH: {
    message: 'TLS key {key_file} does not match certificate {cert_file} ({key}, {cert_key})',
    exit: 2,
  },
  HYP_E_TLS_CLIENT_CERT: {
    message:
      'TLS handshake with {remote} failed: client certificate does not verify against {ca_key} ({reason})',
  },

  // worker lifecycle (reported by the supervisor, never fatal to it)
  HYP_E_APP_START: { message: 'app failed to start: {detail}', exit: 70 },
  HYP_E_WORKER_READY_TIMEOUT: { message: 'worker {worker} did not become ready within {timeout}' },
  HYP_E_WORKER_HEARTBEAT: { message: 'worker {worker} sent no heartbeat for {timeout}; killed' },
  HYP_E_WORKER_RELAY_STALLED: {
    message:
      'worker {worker} does not read what the supervisor relays to it ({detail}); relay to it stopped, worker killed (its clients reconnect to other workers)',
  },
  HYP_E_WORKER_EXIT: { message: 'worker {worker} exited unexpectedly ({reason})' },
  HYP_E_GENERATION_FAILED: { message: 'generation {generation} failed to become ready: {detail}' },
  HYP_E_FORCED_STOP: { message: 'second stop signal: forced exit', exit: 1 },
  HYP_E_DRAIN_TIMEOUT: { message: 'drain did not finish within {timeout}; {remaining} workers killed' },
  HYP_W_DRAIN_ENDPOINTS: {
    message:
      'pod {pod} still in the endpoints of service {service} after drain.delay ({delay}); raise drain.delay (the drain goes on: requests still routed to the pod may fail)',
  },
  HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE: {
    message:
      'cannot follow the EndpointSlices of service {service}: {cause}; pod drains serve for drain.delay',
  },
  HYP_E_SHUTDOWN_TIMEOUT: { message: 'shutdown of {what} did not finish within {timeout}' },
  HYP_E_SHUTDOWN_HOOK: { message: "the app's onShutdown hook failed: {detail}" },
  HYP_E_APP_EXIT: {
    message:
      'worker exiting with code {exit_code} during {stage}, not by the runtime: the app called process.exit({exit_code}), or left nothing to keep the process running',
  },

  // CLI talking to a running supervisor (exit 1: the command failed)
  HYP_E_NOT_RUNNING: { message: 'no running hyp supervisor found ({detail})', exit: 1 },
  HYP_E_ADMIN_REQUEST: { message: 'admin request {method} {url} failed: {detail}', exit: 1 },
  HYP_E_USAGE: { message: '{detail}', exit: 64 },

  // admin server
  HYP_E_FORBIDDEN: { message: 'this admin action needs loopback or the admin bearer token', status: 403 },
  HYP_E_NOT_READY: { message: 'not ready: {reason}', status: 503 },
  HYP_E_CONFLICT: { message: '{detail}', status: 409 },

  // HTTP runtime
  HYP_E_NOT_FOUND: { message: 'no route for {method} {path}', status: 404 },
  HYP_E_METHOD_NOT_ALLOWED: { message: 'method {method} not allowed for {path}', status: 405 },
  HYP_E_BODY_TOO_LARGE: { message: 'request body exceeds {limit} bytes', status: 413 },
  HYP_E_BODY_INVALID: { message: 'request body is not valid {kind}: {detail}', status: 400 },
  HYP_E_UNSUPPORTED_MEDIA_TYPE: { message: 'unsupported content type {type}', status: 415 },
  HYP_E_BAD_REQUEST: { message: '{detail}', status: 400 },
  HYP_E_FORBIDDEN_PATH: { message: 'path is outside the served directory', status: 403 },
  HYP_E_URI_TOO_LONG: { message: 'a path parameter is longer than {limit} characters', status: 414 },
  HYP_E_REQUEST_TIMEOUT: { message: 'request took longer than {timeout}', status: 408 },
  HYP_E_HEADERS_TOO_LARGE: {
    message: 'request line and headers exceed {limit} bytes ({setting})',
    status: 431,
  },
  HYP_E_CHUNK_EXTENSIONS_TOO_LARGE: {
    message: 'chunk extensions exceed {limit} bytes ({parser})',
    status: 413,
  },
  HYP_E_EXPECTATION_FAILED: {
    message: 'unsupported expectation {expect}; only 100-continue is',
    status: 417,
  },
  HYP_E_TOO_MANY_CONNECTIONS: { message: 'connection limit {limit} reached', status: 503 },
  HYP_E_SEND_TIMEOUT: {
    message:
      'connection closed: its pending response bytes made no progress for {timeout} (server.limits.send_timeout)',
  },
  HYP_E_STREAM_SEND_TIMEOUT: {
    message:
      'HTTP/2 stream reset: its pending response bytes made no progress for {timeout} (server.limits.send_timeout; the peer granted no flow-control window)',
  },
  HYP_E_DRAINING: { message: 'server is draining', status: 503 },
  HYP_E_INTERNAL: { message: 'internal server error', status: 500 },
  HYP_E_TLS_RELOAD: { message: 'TLS reload of {file} failed, keeping the previous certificate: {detail}' },
  HYP_E_TLS_FALLBACK: {
    message:
      'TLS files of {at} are unusable ({detail}); this worker serves the last good certificate the supervisor holds (sha256 {fingerprint}, valid to {not_after}) until they are fixed',
  },

  // WebSocket hub
  HYP_E_WS_UNAUTHORIZED: { message: 'websocket upgrade not authorized', status: 401 },
  HYP_E_WS_FORBIDDEN: { message: 'websocket upgrade forbidden: {detail}', status: 403 },
  HYP_E_WS_ORIGIN: { message: 'origin {origin} is not allowed', status: 403 },
  HYP_E_WS_DECODE: { message: 'cannot decode {codec} message: {detail}' },
  HYP_E_WS_DECRYPT: { message: 'message failed decryption' },
  HYP_E_WS_SIGNATURE: { message: 'message signature does not verify' },
  HYP_E_WS_REPLAY: { message: 'message rejected by the replay guard: {detail}' },
  HYP_E_WS_TOO_LARGE: { message: 'message exceeds {limit} bytes' },
  HYP_E_WS_CONTROL: { message: 'invalid control message {type}: {detail}' },
  HYP_E_WS_RECOVERY_FAILED: { message: 'cannot recover channel {channel} from offset {offset}: {detail}' },
  HYP_E_WS_SLOW_CONSUMER: { message: 'send buffer exceeded {limit} bytes' },
  HYP_E_WS_KEY: { message: 'websocket key {key} is unusable: {detail}', exit: 2 },

  // TCP services
  HYP_E_TCP_INVALID_ADDRESS: { message: 'tcp service {name}: invalid address {addr}', exit: 2 },
  HYP_E_TCP_INVALID_HANDLER: { message: 'tcp service {name}: handler must be a function' },
  HYP_E_TCP_UNKNOWN_SERVICE: { message: 'tcp service {name} is not configured (tcp.{name}.addr)' },
  HYP_E_TCP_FRAME_TOO_LARGE: {
    message: 'frame of {size} bytes at byte {offset} exceeds the limit of {limit}',
  },
  HYP_E_TCP_LINE_TOO_LONG: { message: 'line starting at byte {offset} exceeds {limit} bytes' },
  HYP_E_TCP_CLOSED: { message: 'connection is closed' },
  HYP_E_TCP_RATE_LIMITED: { message: 'connection rate limit for {ip} exceeded' },
  HYP_E_TCP_MAX_CONNECTIONS: { message: 'connection limit {limit} reached' },
  HYP_E_TCP_IDLE: { message: 'connection idle for more than {timeout}' },
  HYP_E_TCP_INVALID_OPTION: { message: 'tcp service {name}: option {option} is invalid: {detail}' },
  HYP_E_TCP_DUPLICATE_SERVICE: { message: 'tcp service {name} is registered twice' },
  HYP_E_TCP_SERVER_CLOSED: { message: 'tcp service {name} is {state}; it cannot listen again' },
  HYP_E_TCP_HANDSHAKE: { message: 'TLS handshake with {remote} failed: {detail}' },
  HYP_E_TCP_HANDLER: { message: 'tcp service {name}: handler failed for {remote}: {detail}' },
  HYP_E_TCP_CALLBACK: { message: 'tcp service {name}: the {callback} callback threw: {detail}' },

  // WebSocket hub and client (continued)
  HYP_E_WS_TOO_MANY_SUBSCRIPTIONS: {
    message:
      'cannot add {kind} "{name}": the connection already holds {limit} channels and rooms (websocket.max_subscriptions)',
  },
  HYP_E_WS_SEAL: { message: 'cannot seal outgoing {type} message: {detail}' },
  HYP_E_WS_BACKLOG: {
    message: 'more than {limit} incoming frames waiting to be opened; connection closed (4008) to resume',
  },
  HYP_W_WS_PUBLISH: {
    message:
      'a channel or bus publish was refused (Redis unreachable past the outage bound, or an error from Redis); logged once until one goes through',
  },
  HYP_E_WS_QUEUE_FULL: {
    message:
      'outgoing {type} message dropped: more than {limit} queued while disconnected, or waiting to be sealed or sent (hyp/client maxQueued, maxQueuedBytes)',
  },
  HYP_E_WS_TYPE_RESERVED: {
    message: '{call}: the type "{type}" is the hub\'s; use {method}()',
  },

  // static files and TLS (continued)
  HYP_E_MOUNT_RESPONSE: {
    message: 'the app mounted at {prefix} misused its response ({detail}); the response is left as it was',
  },
  HYP_E_STATIC_FILE_CHANGED: {
    message: 'static file {file} shrank while being sent ({read} of {announced} bytes); response cut',
  },
  HYP_E_TLS_TICKET_KEYS: {
    message: 'session-ticket keys refused, keeping the previous ones: {detail}',
  },
  HYP_W_TLS_CERT_VALIDITY: {
    message:
      'TLS certificate {file} ({key}) is {state}: valid from {not_before} to {not_after}; clients will refuse it',
  },

  // HTTP runtime (continued)
  HYP_E_HTTP_VERSION: {
    message: 'HTTP/{version} is not supported on this connection; use HTTP/1.0, HTTP/1.1 or HTTP/2',
    status: 505,
  },

  // static files and TCP services (continued)
  HYP_E_STATIC_UNREADABLE: { message: 'static file {path} cannot be read: {detail}', status: 403 },
  HYP_E_TCP_READ_PENDING: { message: 'read() called while another read() is pending on this connection' },
  HYP_E_TCP_SEND_BUFFER: {
    message:
      'tcp service {name}: {pending} bytes written to {remote} are not sent yet, more than max_buffered ({limit}); connection closed',
  },

  // WebSocket hub (continued)
  HYP_E_WS_NAME_TOO_LONG: {
    message: '{kind} name of {length} characters is longer than {limit} (maxNameLength)',
  },
  HYP_E_WS_NAME_INVALID: {
    message: '{call}: the {kind} {name} {detail}',
    status: 400,
  },
  HYP_E_WS_RECOVERY_BUSY: { message: 'cannot resume channel {channel} now: {detail}' },
  HYP_E_WS_FORBIDDEN_CHANNEL: { message: 'not allowed to use {kind} "{name}" (canSubscribe, canJoin)' },
  HYP_E_WS_AUTHORIZE_TIMEOUT: {
    message: 'websocket authorize hook did not answer within {timeout} (websocket.authorize_timeout)',
    status: 503,
  },
  HYP_E_WS_PUBLISH_ID: { message: 'invalid publish id: it {detail}' },
  HYP_E_WS_ACK_PENDING: {
    message:
      'publish {id} refused: {limit} publishes of this connection are waiting for their acknowledgement',
  },
  HYP_E_WS_ACK_TIMEOUT: {
    message:
      'publish {id} on "{channel}" not acknowledged within {timeout} ms; the hub may still have accepted it',
  },
  HYP_E_WS_ACK_CLOSED: {
    message: 'publish {id} on "{channel}" not acknowledged: {detail}; the hub may have accepted it',
  },
  HYP_E_WS_PUBLISH_REFUSED: {
    message: 'publish {id} refused: {detail}; it may be sent again',
  },

  // HTTP responses (continued)
  HYP_E_SSE_SLOW_CONSUMER: {
    message: 'server-sent event client left more than {limit} bytes unread; stream closed',
  },
  HYP_E_RESPONSE_LENGTH: {
    message: 'response body does not match its Content-Length ({detail}); response cut',
  },
  HYP_E_STREAM_LENGTH: {
    message: 'c.stream() source gave {sent} bytes where Content-Length announced {announced}; response cut',
  },

  // Node runtime
  HYP_W_NODE_INTERNALS: {
    message:
      'this Node ({node}) lacks the internal {internal} that hyp reads; {workaround} is off in this worker ({consequence})',
  },

  // supervisor ⇄ worker IPC
  HYP_E_IPC_MESSAGE: { message: 'worker {worker} sent a malformed IPC message ({what}); ignored' },
  HYP_E_IPC_RESERVED: {
    message:
      'process.send({ type: "{type}" }) is reserved for the hyp runtime (the supervisor would act on it); use another message type',
  },
  HYP_E_METRICS_COLLECT: { message: 'metric {name} cannot be collected, left out of /metrics: {detail}' },
  HYP_E_WORKER_SPAWN: { message: 'cannot start a process for worker {worker}: {detail}' },
  HYP_E_METRICS_INVALID: { message: 'metric {name} of worker {worker} left out of /metrics: {detail}' },
  HYP_E_METRICS_TOO_MANY: {
    message:
      'metric {name} of worker {worker} left out of /metrics: {series} series, over the {limit} a worker may send',
  },
  HYP_E_METRICS_MISMATCH: {
    message:
      'metric {name} of worker {worker} left out of /metrics: it is a {type} where newer workers have a {served}',
  },
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof catalog;
export type ErrorParams = Record<string, string | number | boolean | undefined>;

function render(template: string, params: ErrorParams): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    params[name] === undefined ? whole : String(params[name]),
  );
}

export class HypError extends Error {
  readonly code: ErrorCode;
  readonly params: ErrorParams;
  readonly exitCode: number;
  readonly status: number;

  constructor(code: ErrorCode, params: ErrorParams = {}, options?: { cause?: unknown }) {
    const entry: CatalogEntry = catalog[code];
    super(render(entry.message, params), options);
    this.name = 'HypError';
    this.code = code;
    this.params = params;
    this.exitCode = entry.exit ?? 1;
    this.status = entry.status ?? 500;
  }

  /** The JSON problem body used wherever an error meets HTTP. */
  toProblem(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

export function isHypError(err: unknown, code?: ErrorCode): err is HypError {
  return err instanceof HypError && (code === undefined || err.code === code);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
