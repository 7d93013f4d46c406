// Types of @shroud/sdk (src/index.js). Hand-written; `npm run typecheck`
// checks them against types-test/usage.ts.

export declare const VERSION: string;

// ---------------------------------------------------------------- errors

/** One failed item of a bulk request. */
export interface ItemError {
  name: string;
  error: string;
}

export interface ShroudErrorDetails {
  status?: number;
  error?: string;
  errors?: ItemError[];
  body?: unknown;
  method?: string;
  path?: string;
  cause?: unknown;
  retryAfter?: number;
}

/** Base class of every error for an API answer or a transport failure. Never holds a secret value. */
export declare class ShroudError extends Error {
  constructor(message: string, details?: ShroudErrorDetails);
  /** HTTP status; 0 when no answer came. */
  readonly status: number;
  /** The server's human text (the body's `error`). */
  readonly error: string;
  /** Per-item failures. */
  readonly errors: ItemError[];
  readonly method?: string;
  readonly path?: string;
  /** The parsed error body (not enumerable). */
  readonly body: unknown;
}

/** 400, 413, 415, 422. */
export declare class ValidationError extends ShroudError {}

/** 413: too much data, e.g. a file written to a sandbox whose disk is full (nothing was written). */
export declare class PayloadTooLargeError extends ValidationError {}

/** The 400 of a bulk secret write: `errors` failed, `setSecrets` were set. */
export declare class SecretsNotSetError extends ValidationError {
  readonly setSecrets: string[];
  readonly versions: Record<string, number>;
}

/** 401: unknown, revoked or expired token. */
export declare class AuthenticationError extends ShroudError {}

/** 403: no token, a missing grant, or a refused fetch destination. */
export declare class PermissionError extends ShroudError {}

/** 404. */
export declare class NotFoundError extends ShroudError {}

/** 409. */
export declare class ConflictError extends ShroudError {}

/** 429. */
export declare class RateLimitError extends ShroudError {
  /** Seconds from Retry-After, when the server sent one. */
  readonly retryAfter?: number;
}

/** 5xx. */
export declare class ServerError extends ShroudError {
  readonly retryAfter?: number;
}

/** No answer: the server could not be reached, or a stream broke off. */
export declare class ConnectionError extends ShroudError {}

// ---------------------------------------------------------------- client

export interface ShroudOptions {
  /** Default `$SHROUD_URL`, else `http://127.0.0.1:7878`. */
  baseUrl?: string;
  /** Default `$SHROUD_TOKEN`. */
  token?: string;
  /** The vault used when a call names none (default `default`). */
  vault?: string;
  /** A time limit for each non-streaming request (not exec, not agents.run). */
  timeoutMs?: number;
  /** A fetch implementation (default the global one). */
  fetch?: typeof globalThis.fetch;
}

export type Query = Record<string, string | number | boolean | string[] | null | undefined>;

export interface RequestOptions {
  query?: Query;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as it is (instead of `body`): bytes, a Blob or a ReadableStream (streamed, chunked). */
  rawBody?: Uint8Array | Blob | ReadableStream<Uint8Array> | string;
  /** The Content-Type of `rawBody` (default `application/octet-stream`). */
  contentType?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Statuses answered without throwing, beside 2xx. */
  okStatuses?: number[];
}

export interface Health {
  status: 'ok' | 'unavailable' | (string & {});
  version: string;
  store: { reachable: boolean; [key: string]: unknown };
  [key: string]: unknown;
}

export declare class Shroud {
  constructor(options?: ShroudOptions);
  readonly baseUrl: string;
  readonly vault: string;
  readonly timeoutMs?: number;
  readonly secrets: Secrets;
  readonly vars: Vars;
  readonly references: References;
  readonly sandboxes: Sandboxes;
  readonly deployments: Deployments;
  readonly agents: Agents;
  readonly runs: Runs;

  /** `GET /api/health` (no token needed); also answers the 503 body. */
  health(): Promise<Health>;
  /** `POST /api/fetch`: references resolved by the server, values masked in the answer. */
  fetch(url: string, options?: FetchOptions): Promise<FetchResponse>;
  /** `GET /api/audit`. */
  audit(options?: { limit?: number; vault?: string; secret?: string }): Promise<AuditRecord[]>;
  /** One request; the parsed JSON answer (raw API field names). Throws a ShroudError for a non-2xx. */
  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<T>;
  /** One request; the Response (for streams). Throws a ShroudError for a non-2xx. */
  send(method: string, path: string, options?: RequestOptions): Promise<Response>;
  toJSON(): { baseUrl: string; vault: string };
}

export default Shroud;

// ---------------------------------------------------------------- secrets

export type Purpose = 'APIKey' | 'SSHKey' | 'UsernamePassword' | 'Other';

export interface VaultOption {
  vault?: string;
}

export interface SecretMeta {
  name: string;
  description: string | null;
  version: number;
  purpose?: Purpose;
  createdAt?: string;
  updatedAt: string;
  expiresAt: string | null;
  [key: string]: unknown;
}

export interface SecretInput {
  name: string;
  value: string;
  description?: string;
  purpose?: Purpose;
}

export interface SetManyResult {
  setSecrets: string[];
  versions: Record<string, number>;
}

export interface RenderedSecret {
  name: string;
  version: number;
  /** PreviewOnly: at most 3 characters, then stars. */
  preview?: string;
  /** Full, UTF-8 values. */
  value?: string;
  /** Full, values that are not UTF-8. */
  valueBase64?: string;
}

export interface Rendered {
  vault: string;
  mode: 'Full' | 'PreviewOnly';
  secrets: RenderedSecret[];
}

export interface RenderedOptions {
  vault?: string;
  /** Alias of the vault. */
  environment?: string;
  /** Default `PreviewOnly`. */
  mode?: 'Full' | 'PreviewOnly';
  /** Only these secrets. */
  names?: string[];
}

export interface Secrets {
  /** Sets one secret; its new version. */
  set(name: string, value: string, options?: { vault?: string; description?: string; purpose?: Purpose }): Promise<number>;
  /** Sets several (not atomic); throws SecretsNotSetError when any failed. */
  setMany(secrets: Record<string, string> | SecretInput[], options?: VaultOption): Promise<SetManyResult>;
  /** Metadata, never the value; NotFoundError if missing. */
  get(name: string, options?: VaultOption): Promise<SecretMeta>;
  exists(name: string, options?: VaultOption): Promise<boolean>;
  list(options?: VaultOption): Promise<SecretMeta[]>;
  /** NotFoundError if missing. */
  delete(name: string, options?: VaultOption): Promise<true>;
  rendered(options?: RenderedOptions): Promise<Rendered>;
}

export interface Vars {
  set(name: string, value: string, options?: VaultOption): Promise<void>;
}

export type Scope = 'workspace' | 'user';

export interface References {
  /** Stores the value (a non-string as compact JSON) in the scope; a `$secret:` reference to it. */
  set(name: string, value: unknown, options?: { scope?: Scope; ttl?: number }): Promise<string>;
  /** A fresh reference to an existing secret of the scope. */
  get(name: string, options?: { scope?: Scope; ttl?: number }): Promise<string>;
  delete(name: string, options?: { scope?: Scope }): Promise<true>;
}

// ---------------------------------------------------------------- fetch

export type FetchAuth =
  | { type: 'bearer'; token: string }
  | { type: 'basic'; username: string; password: string }
  | {
      type: 'awsv4';
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken?: string;
      region: string;
      service: string;
    };

export interface FetchOptions {
  method?: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  /** A string, or anything else sent as its JSON text. */
  body?: unknown;
  auth?: FetchAuth;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface FetchResponse {
  status: number;
  headers: Record<string, string>;
  /** The masked body, when UTF-8. */
  body?: string;
  /** The masked body, when not UTF-8. */
  bodyBase64?: string;
}

export interface AuditRecord {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  vault: string | null;
  secret: string | null;
  version: number | null;
  outcome: string;
  [key: string]: unknown;
}

// ---------------------------------------------------------------- sandboxes

/** `['NAME', 'ENV=NAME']` or `{ ENV: 'NAME' }`. */
export type Grants = string[] | Record<string, string>;

/** An array (program + arguments), or a string run by `sh -c`. */
export type Command = string | string[];

export interface CreateSandboxOptions {
  template: string;
  /** Secrets every command of the sandbox gets. */
  secrets?: Grants;
  env?: Record<string, string>;
  /** Default: the client's vault. */
  vault?: string;
  /** Refuse to create it if the host cannot give every isolation feature. */
  strict?: boolean;
  /** Seconds idle (no exec, no file call) after which the server deletes it (default 3600, at most a week). */
  timeoutS?: number;
  /** Alias of `timeoutS` (seconds, as E2B's `timeout`). */
  timeout?: number;
}

export interface IsolationFeature {
  name: string;
  available: boolean;
  detail: string;
}

export interface SandboxSummary {
  id: string;
  template: string;
  vault: string;
  createdAt: string;
  lastExit: number | null;
  lastExecAt: string | null;
  node?: string;
  [key: string]: unknown;
}

/** `sandbox.info()` / `setTimeout()`: the summary, plus its lifetime. */
export interface SandboxInfo extends SandboxSummary {
  node: string;
  /** Seconds idle after which the server deletes it. */
  timeoutS: number | null;
  /** When that is, RFC 3339 (UTC), as of now. */
  expiresAt: string | null;
}

export interface ExecOptions {
  /** Secrets for this command, beside the sandbox's. */
  secrets?: Grants;
  env?: Record<string, string>;
  /** Relative to the sandbox's working directory. */
  cwd?: string;
  timeoutMs?: number;
  stdin?: string;
  mask?: 'label' | 'stars';
  /** Aborting it closes the request, which kills the command. */
  signal?: AbortSignal;
}

export interface StreamCallbacks {
  /** Called with each chunk of stdout as it comes; awaited. */
  onStdout?: (data: string, event: OutputEvent) => void | Promise<void>;
  onStderr?: (data: string, event: OutputEvent) => void | Promise<void>;
}

export interface ExitInfo {
  exitCode: number | null;
  signal: number | null;
  durationMs: number;
  timedOut: boolean;
  outputLimitReached: boolean;
  cancelled: boolean;
  /** Set when shroud itself could not run the command. */
  error?: string;
  /** Granted secrets too short to be masked. */
  unmaskedSecrets?: string[];
}

export interface ExecResult extends ExitInfo {
  stdout: string;
  stderr: string;
  stdoutBase64?: string;
  stderrBase64?: string;
}

export interface OutputEvent {
  type: 'stdout' | 'stderr';
  data: string;
  ts: string;
}

export interface ExitEvent extends ExitInfo {
  type: 'exit';
  ts: string;
}

export type ExecEvent = OutputEvent | ExitEvent;

/** JSON lines of a streaming route. Iterate once; `abort()` ends it. */
export declare class JsonLineStream<T> implements AsyncIterable<T> {
  abort(): void;
  toArray(): Promise<T[]>;
  [Symbol.asyncIterator](): AsyncIterator<T>;
}

/** A streamed exec: output events in order, then one exit event. */
export declare class ExecStream extends JsonLineStream<ExecEvent> {
  /** Runs to the end: the whole output and the exit. */
  result(): Promise<ExecResult>;
}

export interface CommandRunOptions extends Omit<ExecOptions, 'env'>, StreamCallbacks {
  /** E2B's name for `env`. */
  envs?: Record<string, string>;
  env?: Record<string, string>;
  /** Answer at once with a CommandHandle; the command runs on in the sandbox. */
  background?: boolean;
}

/** A background command's entry of `commands.list()`. */
export interface ProcessInfo {
  processId: number;
  /** E2B's name for `processId`. */
  pid: number;
  command: string[];
  status: 'running' | 'exited' | 'stopped' | (string & {});
  exitCode: number | null;
  startedAt: string;
  endedAt: string | null;
  [key: string]: unknown;
}

/** What `CommandHandle.wait()` resolves with. */
export interface BackgroundResult extends ExecResult {
  /** `exited`, or `stopped` when it was killed. */
  status?: ProcessInfo['status'];
}

/**
 * A command running in the background. `for await (const event of handle)`
 * yields its output events from the start, then the exit event (one
 * followed log shared with `wait()`). `await using` kills it at the end.
 */
export declare class CommandHandle implements AsyncIterable<ExecEvent>, AsyncDisposable {
  /** The process id in the API. */
  readonly pid: number;
  /** Follows the output to the end; a non-zero exit is not an error. */
  wait(): Promise<BackgroundResult>;
  /** SIGTERM (SIGKILL after 10 s); false when there is no such command. */
  kill(): Promise<boolean>;
  /** Its entry of `commands.list()`; NotFoundError when there is none. */
  info(): Promise<ProcessInfo>;
  /** Stops following the output; the command goes on running. */
  disconnect(): void;
  [Symbol.asyncIterator](): AsyncIterator<ExecEvent>;
  [Symbol.asyncDispose](): Promise<void>;
  toJSON(): { pid: number };
}

export interface Commands {
  /** Starts it in the background: resolves at once with its handle. */
  run(command: Command, options: CommandRunOptions & { background: true }): Promise<CommandHandle>;
  /** E2B-style alias of `sandbox.exec`. */
  run(command: Command, options?: CommandRunOptions & { background?: false }): Promise<ExecResult>;
  run(command: Command, options?: CommandRunOptions): Promise<ExecResult | CommandHandle>;
  /** The sandbox's background commands (running and ended). */
  list(): Promise<ProcessInfo[]>;
  /** Stops background command `pid`; false when there is none. */
  kill(pid: number): Promise<boolean>;
  /** A handle on background command `pid` (no request). */
  connect(pid: number, callbacks?: StreamCallbacks): CommandHandle;
}

/** Bytes for `files.write`: sent as they are, or streamed as they are read. */
export type FileData =
  | string
  | Uint8Array
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array | string>
  | Iterable<Uint8Array | string>;

/** An entry of a sandbox's working directory. */
export interface FileEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other' | (string & {});
  size: number | null;
  /** Relative to the working directory. */
  path: string;
}

export interface FileCallOptions {
  signal?: AbortSignal;
}

/** `sandbox.files`: paths are relative to the working directory; what is read is masked. */
export interface Files {
  /** Directories made, file replaced atomically; PayloadTooLargeError (413) when the disk is full. */
  write(path: string, data: FileData, options?: FileCallOptions): Promise<FileEntry>;
  /** The file's (masked) bytes. */
  read(path: string, options?: FileCallOptions): Promise<Uint8Array>;
  /** The file's (masked) content as UTF-8 text. */
  readText(path: string, options?: FileCallOptions): Promise<string>;
  /** The file's (masked) content, read as it arrives. */
  stream(path: string, options?: FileCallOptions): Promise<ReadableStream<Uint8Array>>;
  /** A directory's entries (default the working directory). */
  list(path?: string): Promise<FileEntry[]>;
  /** A file, a link, or a directory recursively; NotFoundError if missing. */
  remove(path: string): Promise<true>;
  exists(path: string): Promise<boolean>;
}

export declare class Sandbox implements AsyncDisposable {
  readonly id: string;
  readonly template?: string;
  readonly vault?: string;
  readonly network?: boolean;
  readonly limits?: Record<string, number>;
  readonly isolation?: IsolationFeature[];
  /** The lifetime as last known (create, `info()`, `setTimeout()`). */
  readonly timeoutS?: number | null;
  readonly expiresAt?: string | null;
  readonly commands: Commands;
  readonly files: Files;
  /** `GET /api/sandboxes/{id}` (does not renew the lifetime). */
  info(): Promise<SandboxInfo>;
  /** E2B's name for `info()`. */
  getInfo(): Promise<SandboxInfo>;
  /** A new lifetime: deleted after `seconds` idle, counted from now. */
  setTimeout(seconds: number): Promise<SandboxInfo>;
  /** False once it was deleted or expired. */
  isRunning(): Promise<boolean>;
  /** Buffered, or streamed to the callbacks when given; the result has all the output. */
  exec(command: Command, options?: ExecOptions & StreamCallbacks): Promise<ExecResult>;
  /** `for await (const event of sandbox.stream(cmd))`. */
  stream(command: Command, options?: ExecOptions): ExecStream;
  /** NotFoundError if already gone. */
  delete(): Promise<true>;
  /** Deletes it; already gone is fine. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  toJSON(): { id: string; template?: string; vault?: string };
}

export interface Sandboxes {
  create(options: CreateSandboxOptions | string): Promise<Sandbox>;
  /** A handle on an existing sandbox (no request). */
  attach(id: string, options?: VaultOption): Sandbox;
  /** This token's sandboxes, oldest first. */
  list(): Promise<SandboxSummary[]>;
  /** One sandbox's info; NotFoundError when gone. */
  get(id: string): Promise<SandboxInfo>;
}

// ---------------------------------------------------------------- deployments

export interface DeploymentSpec {
  templateSlug: string;
  apiSlug: string;
  command: Command;
  secrets?: Grants;
  mode?: 'service' | 'agent';
  /** Default: the client's vault. */
  vault?: string;
  env?: Record<string, string>;
  replicas?: number;
  /** A folder of `<home>/runtimes/` copied into the working directory. */
  runtimeSlug?: string;
  /** `host:port` or `unix:NAME`. */
  sockets?: string[];
  /** Up once `READY=1` is sent to `$NOTIFY_SOCKET`. */
  notify?: boolean;
  /** Up once alive this many seconds (default 1). */
  readyAfter?: number;
}

export interface Instance {
  id: number;
  pid: number | null;
  state: string;
  startedAt: string;
  secretVersions: Record<string, number>;
  [key: string]: unknown;
}

export interface Deployment {
  slug: string;
  state: 'starting' | 'running' | 'backoff' | 'stopped' | (string & {});
  mode: 'service' | 'agent';
  vault: string;
  template: string;
  command: string[];
  secrets: string[];
  replicas: number;
  restarts: number;
  instances: Instance[];
  lastExit: number | null;
  error: string | null;
  rotation: unknown;
  secretVersions: Record<string, number>;
  sockets: string[];
  createdAt: string;
  [key: string]: unknown;
}

export interface LogLine {
  ts: string;
  instance?: string;
  stream?: 'stdout' | 'stderr';
  data?: string;
  event?: string;
  code?: number;
  status?: RunStatus;
  [key: string]: unknown;
}

export interface LogOptions {
  follow?: boolean;
  tail?: number;
  signal?: AbortSignal;
}

export interface Deployments {
  create(spec: DeploymentSpec): Promise<{ slug: string }>;
  list(): Promise<Deployment[]>;
  logs(slug: string, options?: LogOptions): JsonLineStream<LogLine>;
  stop(slug: string): Promise<{ slug: string; done: boolean }>;
  start(slug: string): Promise<{ slug: string; done: boolean }>;
  restart(slug: string): Promise<{ slug: string; done: boolean }>;
  delete(slug: string): Promise<{ slug: string; deleted: boolean }>;
}

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled';

export interface Run {
  runId: string;
  slug: string;
  status: RunStatus;
  exitCode: number | null;
  startedAt: string;
  endedAt: string | null;
  /** The masked log (absent in `agents.runs` listings). */
  log?: string;
  vault?: string;
  [key: string]: unknown;
}

export interface AgentRunOptions {
  message?: string;
  params?: Record<string, unknown>;
  /** Default true: answer when the run ended. */
  wait?: boolean;
  timeoutS?: number;
}

export interface Agents {
  run(slug: string, options: AgentRunOptions & { wait: false }): Promise<{ runId: string }>;
  run(slug: string, options?: AgentRunOptions & { wait?: true }): Promise<Run>;
  run(slug: string, options?: AgentRunOptions): Promise<Run | { runId: string }>;
  runs(slug: string): Promise<Run[]>;
}

export interface Runs {
  get(id: string): Promise<Run>;
  log(id: string, options?: LogOptions): JsonLineStream<LogLine>;
}
