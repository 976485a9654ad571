/**
 * The configuration schema: the single source of truth for hyp.yaml, the
 * `HYP_*` environment mapping, `--set` key paths, the TypeScript type of the
 * resolved config and the JSON Schema emitted for editors
 * (`hyp schema > hyp.schema.json`).
 *
 * Every object is closed (`additionalProperties: false`) so a misspelled key
 * is an error, not a silent default. Durations (`5s`, `250ms`, `1m30s`) and
 * sizes (`64KiB`, `1MiB`, `512`) stay strings here; read them with
 * `durationMs` / `sizeBytes` from `units.ts`.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox';

const closed = { additionalProperties: false } as const;

export const Duration = (def: string, description = 'a duration such as 250ms, 5s, 1m30s') =>
  Type.String({ format: 'duration', default: def, description });
export const Size = (def: string, description = 'a size such as 512, 64KiB, 1MiB') =>
  Type.String({ format: 'size', default: def, description });
export const Address = (
  def: string,
  description = 'a listen address such as :8080, 127.0.0.1:8080, [::]:8080',
) => Type.String({ format: 'address', default: def, description });
const Str = (def: string, description: string) => Type.String({ default: def, description });
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description });
const Int = (def: number, description: string, opts: { minimum?: number; maximum?: number } = {}) =>
  Type.Integer({ default: def, description, ...opts });

export const TlsSchema = Type.Object(
  {
    enabled: Bool(false, 'serve TLS on this listener'),
    cert_file: Str('', 'PEM certificate chain file'),
    key_file: Str('', 'PEM private key file'),
    ca_file: Str('', 'PEM CA bundle used to verify client certificates (mTLS)'),
    client_auth: Type.Union([Type.Literal('none'), Type.Literal('request'), Type.Literal('require')], {
      default: 'none',
      description: 'client certificate policy: none, request or require',
    }),
    min_version: Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], {
      default: 'TLSv1.2',
      description: 'lowest TLS version accepted',
    }),
    ticket_rotation: Duration('12h', 'how often the supervisor rotates session-ticket keys'),
    watch: Bool(true, 'reload certificate files when they change on disk'),
    share_ticket_keys: Bool(
      true,
      "workers use the supervisor's rotated session-ticket keys; false (per-worker keys) only to demonstrate why: resumption then succeeds on ~1/N of reconnects",
    ),
  },
  { ...closed, default: {} },
);

export const TcpServiceSchema = Type.Object(
  {
    addr: Address('', 'listen address of this TCP service'),
    idle_timeout: Duration('5m', 'close a connection without traffic for this long (0 disables)'),
    handshake_timeout: Duration(
      '10s',
      'with tls: close a connection whose TLS handshake has not completed within this (0: only idle_timeout applies)',
    ),
    max_connections: Int(10_000, 'connections per worker; more are closed at once', { minimum: 1 }),
    shutdown_timeout: Duration('10s', 'how long drain waits for handlers before closing connections'),
    no_delay: Bool(true, 'disable Nagle on accepted sockets'),
    keep_alive: Duration('30s', 'TCP keep-alive initial delay (0 disables)'),
    max_buffered: Size(
      '16MiB',
      'bytes a write may find queued and not yet sent on its connection; past it the connection is closed (HYP_E_TCP_SEND_BUFFER). 0: unlimited',
    ),
    rate_limit: Type.Object(
      {
        per_ip_per_second: Type.Number({
          default: 0,
          minimum: 0,
          description: 'new connections per IP per second (0: off)',
        }),
        burst: Int(20, 'token bucket size per IP', { minimum: 1 }),
      },
      { ...closed, default: {} },
    ),
    tls: TlsSchema,
  },
  { ...closed, default: {} },
);

export const ConfigSchema = Type.Object(
  {
    app: Str('', 'path of the application module (usually given to `hyp run`)'),
    server: Type.Object(
      {
        addr: Address(':8080', 'HTTP listen address (PORT overrides the port)'),
        protocol: Type.Union([Type.Literal('auto'), Type.Literal('http1'), Type.Literal('http2')], {
          default: 'auto',
          description: 'http1, http2, or auto (HTTP/1.1 + HTTP/2 on one port)',
        }),
        trusted_proxies: Type.Array(Type.String(), {
          default: [],
          description: 'addresses or CIDRs whose X-Forwarded-For is believed',
        }),
        tls: TlsSchema,
        router: Type.Object(
          {
            ignore_trailing_slash: Bool(true, '/users/ matches the route /users'),
            case_sensitive: Bool(true, '/Users does not match the route /users'),
          },
          { ...closed, default: {} },
        ),
        http2: Type.Object(
          {
            max_concurrent_streams: Int(250, 'SETTINGS_MAX_CONCURRENT_STREAMS', { minimum: 1 }),
            max_frame_size: Int(16_384, 'SETTINGS_MAX_FRAME_SIZE, 16384..16777215', {
              minimum: 16_384,
              maximum: 16_777_215,
            }),
            idle_timeout: Duration(
              '2m',
              'close (GOAWAY) an HTTP/2 session with no open request for this long (0 disables)',
            ),
          },
          { ...closed, default: {} },
        ),
        limits: Type.Object(
          {
            headers_timeout: Duration('20s', 'time allowed to receive the request headers (slowloris)'),
            request_timeout: Duration('5m', 'time allowed for a whole request'),
            keep_alive_timeout: Duration(
              '65s',
              'idle keep-alive socket timeout (above common LB idle timeouts)',
            ),
            max_header_size: Size('16KiB', 'largest request header block'),
            body_limit: Size('1MiB', 'largest request body read by c.body()'),
            max_connections: Int(0, 'connections per worker (0: unlimited)', { minimum: 0 }),
            send_timeout: Duration(
              '5m',
              'close a connection whose pending response bytes make no progress this long (slow readers; 0: never)',
            ),
          },
          { ...closed, default: {} },
        ),
      },
      { ...closed, default: {} },
    ),
    admin: Type.Object(
      {
        addr: Address(':9090', 'admin HTTP address (health, ready, drain, metrics, status)'),
        token_file: Str(
          '',
          'file with the bearer token that allows POST /drain and /restart from non-loopback',
        ),
      },
      { ...closed, default: {} },
    ),
    supervisor: Type.Object(
      {
        workers: Int(0, 'worker processes (0: the CPUs this container may use)', {
          minimum: 0,
          maximum: 1024,
        }),
        pid_file: Str('/tmp/hyp.pid', 'PID file, written atomically at start and removed at exit'),
        ready_timeout: Duration('30s', 'time a new worker has to report ready'),
        heartbeat_interval: Duration('1s', 'how often workers report'),
        heartbeat_timeout: Duration('10s', 'a worker silent this long is killed and replaced'),
        backoff_initial: Duration('100ms', 'first restart delay after a crash'),
        backoff_max: Duration('30s', 'longest restart delay'),
        backoff_reset: Duration('30s', 'uptime after which a worker counts as stable and the delay resets'),
      },
      { ...closed, default: {} },
    ),
    drain: Type.Object(
      {
        delay: Duration('5s', 'keep serving this long after /ready turns 503, while endpoints propagate'),
        timeout: Duration('25s', 'time workers have to finish in-flight work'),
        websocket_spread: Duration('5s', 'spread WebSocket close frames over this window'),
        endpoints: Type.Object(
          {
            service: Str(
              '',
              "Service whose EndpointSlices (discovery.k8s.io/v1) the drain watches: the serving phase ends once the pod has left them (plus settle), drain.delay at the latest; '' (off): serve for drain.delay",
            ),
            namespace: Str(
              '',
              "the Service's namespace ('': the service account's namespace file, else env POD_NAMESPACE)",
            ),
            pod: Str(
              '',
              "this pod's name, matched against each endpoint's targetRef ('': env POD_NAME, else the hostname)",
            ),
            settle: Duration(
              '2s',
              'keep serving this long after the pod has left the EndpointSlices, while kube-proxies and load balancers apply the change',
            ),
          },
          { ...closed, default: {} },
        ),
      },
      { ...closed, default: {} },
    ),
    log: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info', description: 'pino log level' },
        ),
        format: Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], {
          default: 'auto',
          description: 'auto: pretty on a TTY, JSON otherwise',
        }),
      },
      { ...closed, default: {} },
    ),
    websocket: Type.Object(
      {
        path: Str('/ws', 'route the hub is mounted on'),
        codecs: Type.Array(
          Type.Union([
            Type.Literal('json'),
            Type.Literal('protobuf'),
            Type.Literal('flatbuffers'),
            Type.Literal('msgpack'),
          ]),
          { default: ['json', 'protobuf', 'flatbuffers', 'msgpack'], description: 'codecs offered' },
        ),
        allowed_origins: Type.Array(Type.String(), {
          default: [],
          description: 'origins allowed to connect (empty: same host only; "*": any)',
        }),
        max_message_size: Size('512KiB', 'larger messages close the connection with 1009'),
        ping_interval: Duration('25s', 'server ping interval'),
        pong_timeout: Duration('10s', 'close a client that does not answer a ping in time'),
        send_buffer_limit: Size('1MiB', 'per-client buffered bytes before the slow-consumer policy applies'),
        slow_consumer: Type.Union([Type.Literal('close'), Type.Literal('drop')], {
          default: 'close',
          description: 'close the connection or drop messages when the send buffer is full',
        }),
        history_size: Int(1000, 'messages kept per channel for recovery', { minimum: 0 }),
        max_subscriptions: Int(
          1000,
          'channels plus rooms one connection may hold; one more is refused with HYP_E_WS_TOO_MANY_SUBSCRIPTIONS',
          { minimum: 1 },
        ),
        authorize_timeout: Duration(
          '10s',
          'how long an upgrade may wait on the async authorize hook before it is refused with 503 HYP_E_WS_AUTHORIZE_TIMEOUT (0: no limit)',
        ),
        history_bytes: Size(
          '64MiB',
          "payload bytes of the WebSocket history across all channels: the pod-wide one (the supervisor's, for the ipc bus) and a worker's own without a supervisor; beyond it the oldest messages go first (Redis streams: MAXLEN history_size and Redis's maxmemory)",
        ),
        compression: Type.Object(
          {
            enabled: Bool(false, 'permessage-deflate'),
            level: Int(1, 'zlib level 1..9', { minimum: 1, maximum: 9 }),
            threshold: Size('1KiB', 'compress messages at least this large'),
            concurrency: Int(10, 'concurrent zlib operations (ws advises a bound)', { minimum: 1 }),
          },
          { ...closed, default: {} },
        ),
        security: Type.Object(
          {
            aes_key_file: Str('', 'file holding the raw 32-byte AES-256-GCM key'),
            hmac_key_file: Str('', 'file holding the raw HMAC-SHA256 key'),
            sign_then_encrypt: Bool(true, 'Enc(HMAC‖payload); false: encrypt-then-sign'),
            max_failures: Int(5, 'security failures before the connection is closed', { minimum: 1 }),
            replay_window: Duration('0s', 'reject messages older than this or replayed (0: off)'),
          },
          { ...closed, default: {} },
        ),
        bus: Type.Object(
          {
            driver: Type.Union([Type.Literal('ipc'), Type.Literal('redis')], {
              default: 'ipc',
              description: 'ipc: across workers of one pod; redis: across pods',
            }),
            redis_url: Str('redis://127.0.0.1:6379', 'Redis URL for the redis driver'),
          },
          { ...closed, default: {} },
        ),
      },
      { ...closed, default: {} },
    ),
    tcp: Type.Record(Type.String({ pattern: '^[a-z][a-z0-9-]*$' }), TcpServiceSchema, {
      default: {},
      description: 'named raw TCP services; each name becomes a supervisor-held listener',
    }),
  },
  { ...closed, default: {}, $id: 'https://hyp.dev/schema/hyp.json', title: 'hyp configuration' },
);

export type Config = Static<typeof ConfigSchema>;
export type TlsConfig = Static<typeof TlsSchema>;
export type TcpServiceConfig = Static<typeof TcpServiceSchema>;

/** Listener names that are not free for TCP services. */
export const reservedListenerNames = new Set(['http', 'h3', 'admin']);

export function schemaAt(path: readonly string[]): TSchema | undefined {
  let node: TSchema | undefined = ConfigSchema;
  for (const key of path) {
    if (!node) return undefined;
    if (node.type === 'object' && node.properties && Object.hasOwn(node.properties, key))
      node = node.properties[key] as TSchema;
    else if (node.type === 'object' && node.patternProperties)
      node = Object.values(node.patternProperties)[0] as TSchema;
    else return undefined;
  }
  return node;
}
