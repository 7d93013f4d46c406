// shroud SDK for JavaScript / TypeScript (Node >= 20). Plain ESM, no
// dependencies: the HTTP API of `shroud serve` over the global `fetch`.
//
// Conventions: options are camelCase; request bodies are translated to the
// API's field names here, and answers come back with camelCase keys (maps
// keyed by secret or variable names, such as `versions`, keep their keys).
// No secret value, and never the token, is put in an error message: error
// texts are the server's (which names secrets, never values) or this
// module's own.

export const VERSION = '0.1.0';

const DEFAULT_URL = 'http://127.0.0.1:7878';
const DEFAULT_VAULT = 'default';
// Node 20.4+ has it; older 20.x get the symbol Node itself uses.
const asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');

// ---------------------------------------------------------------- errors

/** Base class of every error the SDK throws for an API answer or transport failure. */
export class ShroudError extends Error {
  constructor(message, { status = 0, error, errors = [], body, method, path, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** HTTP status (0 when no answer came). */
    this.status = status;
    /** The server's human text (`error` of the body). */
    this.error = error ?? message;
    /** Per-item failures: `[{ name, error }]`. */
    this.errors = errors;
    this.method = method;
    this.path = path;
    // The parsed body, kept out of enumeration so that logging the error
    // prints the message and status, not a body.
    Object.defineProperty(this, 'body', { value: body, enumerable: false, writable: true });
  }
}

/** 400, 413, 415, 422: the request was refused as invalid. */
export class ValidationError extends ShroudError {}

/** 413: too much data, e.g. a file written to a sandbox whose disk is full (nothing was written). */
export class PayloadTooLargeError extends ValidationError {}

/** 400 from a bulk secret write: some secrets failed, the others were set. */
export class SecretsNotSetError extends ValidationError {
  constructor(message, details = {}) {
    super(message, details);
    const body = details.body ?? {};
    /** Names that were set despite the failures. */
    this.setSecrets = Array.isArray(body.set_secrets) ? body.set_secrets : [];
    /** Versions of the secrets that were set. */
    this.versions = body.versions && typeof body.versions === 'object' ? { ...body.versions } : {};
  }
}

/** 401: unknown, revoked or expired token. */
export class AuthenticationError extends ShroudError {}

/** 403: no token, or a grant is missing (or a fetch destination was refused). */
export class PermissionError extends ShroudError {}

/** 404. */
export class NotFoundError extends ShroudError {}

/** 409. */
export class ConflictError extends ShroudError {}

/** 429: too many sandbox commands or agent runs at once. */
export class RateLimitError extends ShroudError {
  constructor(message, details = {}) {
    super(message, details);
    /** Seconds the server asked to wait (Retry-After), if it said. */
    this.retryAfter = details.retryAfter;
  }
}

/** 5xx. */
export class ServerError extends ShroudError {
  constructor(message, details = {}) {
    super(message, details);
    this.retryAfter = details.retryAfter;
  }
}

/** No answer: the server could not be reached, or a stream broke off. */
export class ConnectionError extends ShroudError {}

function errorClass(status, body) {
  if (status === 400 && body && typeof body === 'object' && 'set_secrets' in body) {
    return SecretsNotSetError;
  }
  if (status === 413) return PayloadTooLargeError;
  if (status === 400 || status === 415 || status === 422) return ValidationError;
  if (status === 401) return AuthenticationError;
  if (status === 403) return PermissionError;
  if (status === 404) return NotFoundError;
  if (status === 409) return ConflictError;
  if (status === 429) return RateLimitError;
  if (status >= 500) return ServerError;
  return ShroudError;
}

async function errorFromResponse(response, method, path) {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // the body broke off: the status is all there is
  }
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  const status = response.status;
  const error =
    body && typeof body === 'object' && typeof body.error === 'string'
      ? body.error
      : response.statusText || `HTTP ${status}`;
  const errors =
    body && typeof body === 'object' && Array.isArray(body.errors)
      ? body.errors.map((e) => ({ name: String(e?.name ?? ''), error: String(e?.error ?? '') }))
      : [];
  const retry = response.headers.get('retry-after');
  const retryAfter = retry !== null && retry !== '' && !Number.isNaN(Number(retry)) ? Number(retry) : undefined;
  const Class = errorClass(status, body);
  return new Class(`${method} ${path}: ${status} ${error}`, {
    status,
    error,
    errors,
    body,
    method,
    path,
    retryAfter,
  });
}

// ---------------------------------------------------------------- helpers

// Keys whose values are maps keyed by user names (secrets, env vars,
// headers): their keys are kept as they are.
const OPAQUE_KEYS = new Set(['versions', 'secret_versions', 'headers', 'env', 'params']);

function camelKey(key) {
  return key.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/** Converts an API answer's keys to camelCase (recursively, maps of names excepted). */
function camel(value) {
  if (Array.isArray(value)) return value.map(camel);
  if (value === null || typeof value !== 'object') return value;
  const out = {};
  for (const [key, v] of Object.entries(value)) {
    out[camelKey(key)] = OPAQUE_KEYS.has(key) && v && typeof v === 'object' ? { ...v } : camel(v);
  }
  return out;
}

function seg(text, what) {
  if (typeof text !== 'string' || text === '') {
    throw new TypeError(`${what} must be a non-empty string`);
  }
  return encodeURIComponent(text);
}

/** Drops the keys whose value is undefined. */
function defined(object) {
  const out = {};
  for (const [k, v] of Object.entries(object)) if (v !== undefined) out[k] = v;
  return out;
}

/** `['NAME', 'ENV=NAME']` or `{ ENV: 'NAME' }` → the API's list of grants. */
function grants(secrets, what = 'secrets') {
  if (secrets === undefined || secrets === null) return undefined;
  if (Array.isArray(secrets)) {
    for (const s of secrets) {
      if (typeof s !== 'string') throw new TypeError(`${what}: each grant is a string, NAME or ENV=NAME`);
    }
    return [...secrets];
  }
  if (typeof secrets === 'object') {
    return Object.entries(secrets).map(([env, name]) => {
      if (typeof name !== 'string') throw new TypeError(`${what}.${env}: the secret's name must be a string`);
      return env === name ? name : `${env}=${name}`;
    });
  }
  throw new TypeError(`${what} must be an array of NAME / ENV=NAME, or an object { ENV: NAME }`);
}

function envMap(env, what = 'env') {
  if (env === undefined || env === null) return undefined;
  if (typeof env !== 'object' || Array.isArray(env)) throw new TypeError(`${what} must be an object of strings`);
  const out = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    // A variable's value is not named in the message (it may be sensitive).
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new TypeError(`${what}.${k} must be a string`);
    }
    out[k] = String(v);
  }
  return out;
}

/** A command: an array (program + arguments) or a string, run by `sh -c`. */
function commandArray(command) {
  if (typeof command === 'string') {
    if (command.trim() === '') throw new TypeError('command must not be empty');
    return ['sh', '-c', command];
  }
  if (Array.isArray(command) && command.length > 0 && command.every((a) => typeof a === 'string')) {
    return [...command];
  }
  throw new TypeError('command must be a string (run by sh -c) or a non-empty array of strings');
}

/** Parses a body of JSON lines as they arrive. */
async function* jsonLines(body) {
  if (!body) return;
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let at;
      while ((at = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, at).trim();
        buffer = buffer.slice(at + 1);
        if (line) yield JSON.parse(line);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) yield JSON.parse(buffer.trim());
    finished = true;
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function anySignal(...signals) {
  const list = signals.filter(Boolean);
  if (list.length <= 1) return list[0];
  return AbortSignal.any(list);
}

// ---------------------------------------------------------------- streams

/**
 * JSON lines from a streaming route, as an async iterable. Iterating opens
 * the request; leaving the loop early (break, throw) or `abort()` closes it.
 */
export class JsonLineStream {
  #open;
  #map;
  #controller = new AbortController();
  #signal;
  #started = false;

  constructor(open, map = camel, { signal } = {}) {
    this.#open = open;
    this.#map = map;
    this.#signal = signal;
  }

  /** Stops the stream (the request is closed). */
  abort() {
    this.#controller.abort();
  }

  async *[Symbol.asyncIterator]() {
    if (this.#started) throw new TypeError('this stream was already iterated');
    this.#started = true;
    const signal = anySignal(this.#signal, this.#controller.signal);
    const response = await this.#open(signal);
    let complete = false;
    try {
      for await (const line of jsonLines(response.body)) {
        const item = this.#map(line);
        if (item === undefined) continue;
        yield item;
      }
      complete = true;
    } catch (e) {
      if (signal?.aborted && this.#controller.signal.aborted) return;
      // (JSON.parse's message quotes the line: not repeated here)
      if (e instanceof SyntaxError) throw new ConnectionError('a line of the stream is not JSON');
      if (e?.name === 'AbortError') throw e;
      if (e instanceof ShroudError) throw e;
      throw new ConnectionError(`the stream broke off: ${e?.message ?? e}`, { cause: e });
    } finally {
      if (!complete) this.#controller.abort();
    }
  }

  /** Reads the whole stream (for a stream that ends: not `follow`). */
  async toArray() {
    const items = [];
    for await (const item of this) items.push(item);
    return items;
  }
}

function exitFields(line) {
  const exitCode = line.exit_code ?? line.code ?? null;
  return defined({
    exitCode,
    signal: line.signal ?? null,
    durationMs: line.duration_ms ?? 0,
    timedOut: line.timed_out ?? false,
    outputLimitReached: line.output_limit_reached ?? false,
    cancelled: line.cancelled ?? false,
    error: line.error,
    unmaskedSecrets: line.unmasked_secrets,
  });
}

function execEvent(line) {
  if (line.event === 'exit') return { type: 'exit', ts: line.ts, ...exitFields(line) };
  if (line.stream === 'stdout' || line.stream === 'stderr') {
    return { type: line.stream, data: line.data ?? '', ts: line.ts };
  }
  return undefined; // a line kind this SDK does not know yet
}

/**
 * The events of a streamed exec: `{ type: 'stdout' | 'stderr', data, ts }`
 * in the order they happened, then one `{ type: 'exit', exitCode, ... }`.
 */
/**
 * An event of a background command's log: one line per event, its newline
 * dropped by the server; given back, so that the data reads as a
 * foreground command's chunks do.
 */
function logEvent(line) {
  const event = execEvent(line);
  if (event && event.type !== 'exit' && !event.data.endsWith('\n')) event.data += '\n';
  return event;
}

export class ExecStream extends JsonLineStream {
  constructor(open, options = {}) {
    super(open, options.lineFramed ? logEvent : execEvent, options);
  }

  async *[Symbol.asyncIterator]() {
    let exited = false;
    for await (const event of super[Symbol.asyncIterator]()) {
      if (event.type === 'exit') exited = true;
      yield event;
      if (exited) return;
    }
    if (!exited) throw new ConnectionError('the exec stream ended without an exit event');
  }

  /** Runs to the end; the result with the whole stdout and stderr. */
  async result() {
    let stdout = '';
    let stderr = '';
    let exit;
    for await (const event of this) {
      if (event.type === 'stdout') stdout += event.data;
      else if (event.type === 'stderr') stderr += event.data;
      else if (event.type === 'exit') exit = event;
    }
    const { type: _t, ts: _ts, ...fields } = exit;
    return { ...fields, stdout, stderr };
  }
}

// ---------------------------------------------------------------- client

/** A client of one shroud server, acting as one token. */
export class Shroud {
  #token;
  #fetch;

  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] default `$SHROUD_URL`, else http://127.0.0.1:7878
   * @param {string} [options.token] default `$SHROUD_TOKEN`
   * @param {string} [options.vault] the vault calls use when they name none (default `default`)
   * @param {number} [options.timeoutMs] a time limit for each non-streaming request
   * @param {typeof fetch} [options.fetch] a fetch implementation (default the global one)
   */
  constructor(options = {}) {
    const env = globalThis.process?.env ?? {};
    this.baseUrl = String(options.baseUrl ?? env.SHROUD_URL ?? DEFAULT_URL).replace(/\/+$/, '');
    this.#token = options.token ?? env.SHROUD_TOKEN ?? undefined;
    this.vault = options.vault ?? DEFAULT_VAULT;
    this.timeoutMs = options.timeoutMs;
    this.#fetch = options.fetch ?? globalThis.fetch;
    if (typeof this.#fetch !== 'function') throw new TypeError('no fetch: use Node 20+ or pass options.fetch');
    this.secrets = new Secrets(this);
    this.vars = new Vars(this);
    this.references = new References(this);
    this.sandboxes = new Sandboxes(this);
    this.deployments = new Deployments(this);
    this.agents = new Agents(this);
    this.runs = new Runs(this);
  }

  /** The token is never shown. */
  toJSON() {
    return { baseUrl: this.baseUrl, vault: this.vault };
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `Shroud { baseUrl: '${this.baseUrl}', vault: '${this.vault}' }`;
  }

  /**
   * Sends one request; returns the Response (any 2xx, or a status in
   * `okStatuses`), or throws the ShroudError of the answer.
   */
  async send(method, path, { query, body, rawBody, contentType, headers, signal, timeoutMs, okStatuses } = {}) {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined || v === null) continue;
      url.searchParams.set(k, Array.isArray(v) ? v.join(',') : String(v));
    }
    const h = { accept: 'application/json', ...(headers ?? {}) };
    if (this.#token) h.authorization = `Bearer ${this.#token}`;
    let payload;
    const init = { method, headers: h };
    if (rawBody !== undefined) {
      // Bytes as they are (a file's content): a stream is sent as it is read, chunked.
      h['content-type'] = contentType ?? 'application/octet-stream';
      payload = rawBody;
      if (typeof ReadableStream !== 'undefined' && rawBody instanceof ReadableStream) init.duplex = 'half';
      // Not 'follow': a request that may be redirected is cloned first, which
      // tees a streamed body and keeps every chunk of it in memory until the
      // end (the Fetch spec's "clone a request"). The API never redirects.
      init.redirect = 'error';
    } else if (body !== undefined) {
      h['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const limit = timeoutMs ?? undefined;
    const effective = anySignal(signal, limit ? AbortSignal.timeout(limit) : undefined);
    let response;
    try {
      response = await this.#fetch(url, { ...init, body: payload, signal: effective });
    } catch (e) {
      if (e?.name === 'AbortError' || e?.name === 'TimeoutError') throw e;
      // A streamed body whose source threw: that error, as it is.
      for (let c = e, depth = 0; c && depth < 4; c = c.cause, depth += 1) {
        if (c[uploadSource] !== undefined) throw c[uploadSource];
      }
      const why = e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(e);
      throw new ConnectionError(`${method} ${path}: cannot reach shroud at ${this.baseUrl}: ${why}`, {
        method,
        path,
        cause: e,
      });
    }
    if (!response.ok && !(okStatuses ?? []).includes(response.status)) {
      throw await errorFromResponse(response, method, path);
    }
    return response;
  }

  /** Sends one request and parses its JSON answer (`{}` for an empty one). */
  async request(method, path, options = {}) {
    const response = await this.send(method, path, { timeoutMs: this.timeoutMs, ...options });
    const text = await response.text();
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new ShroudError(`${method} ${path}: the answer is not JSON`, {
        status: response.status,
        method,
        path,
        cause: e,
      });
    }
  }

  /** `GET /api/health` (no token needed): `{ status, version, store: { reachable } }`, also on 503. */
  async health() {
    return camel(await this.request('GET', '/api/health', { okStatuses: [503] }));
  }

  /**
   * `POST /api/fetch`: an HTTP request made by the server, `$secret:`
   * references in the url, headers, query, body and auth resolved there,
   * and every resolved value masked in the answer.
   */
  async fetch(url, { method, headers, query, body, auth, timeoutMs, signal } = {}) {
    if (typeof url !== 'string' || !url) throw new TypeError('url must be a non-empty string');
    const request = defined({
      url,
      method,
      headers: envMap(headers, 'headers'),
      query: envMap(query, 'query'),
      body: body === undefined || body === null ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      auth: fetchAuth(auth),
      timeout_ms: timeoutMs,
    });
    return camel(await this.request('POST', '/api/fetch', { body: request, signal }));
  }

  /** `GET /api/audit`: audit records of the vaults this token can read. */
  async audit({ limit, vault, secret } = {}) {
    const answer = await this.request('GET', '/api/audit', { query: { limit, vault, secret } });
    return camel(answer.records ?? []);
  }
}

function fetchAuth(auth) {
  if (auth === undefined || auth === null) return undefined;
  if (typeof auth !== 'object' || typeof auth.type !== 'string') {
    throw new TypeError("auth must be { type: 'bearer' | 'basic' | 'awsv4', ... }");
  }
  switch (auth.type) {
    case 'bearer':
      return { type: 'bearer', token: auth.token };
    case 'basic':
      return { type: 'basic', username: auth.username, password: auth.password };
    case 'awsv4':
      return defined({
        type: 'awsv4',
        access_key_id: auth.accessKeyId ?? auth.access_key_id,
        secret_access_key: auth.secretAccessKey ?? auth.secret_access_key,
        session_token: auth.sessionToken ?? auth.session_token,
        region: auth.region,
        service: auth.service,
      });
    default:
      return { ...auth };
  }
}

// ---------------------------------------------------------------- secrets

const PURPOSES = new Set(['APIKey', 'SSHKey', 'UsernamePassword', 'Other']);

function secretItem(item, index) {
  if (!item || typeof item !== 'object') throw new TypeError(`secrets[${index}] must be an object`);
  const { name, description, purpose } = item;
  const value = item.value ?? item.secret;
  if (typeof name !== 'string' || !name) throw new TypeError(`secrets[${index}].name must be a non-empty string`);
  if (typeof value !== 'string') throw new TypeError(`secret \`${name}\`: the value must be a string`);
  if (purpose !== undefined && !PURPOSES.has(purpose)) {
    throw new TypeError(`secret \`${name}\`: purpose is APIKey, SSHKey, UsernamePassword or Other`);
  }
  return defined({ name, secret: value, description, purpose });
}

class Secrets {
  #client;
  constructor(client) {
    this.#client = client;
  }

  #vault(vault) {
    return vault ?? this.#client.vault;
  }

  /** Sets one secret; returns its new version. */
  async set(name, value, { vault, description, purpose } = {}) {
    const { versions } = await this.setMany([{ name, value, description, purpose }], { vault });
    return versions[name];
  }

  /**
   * Sets several secrets (not atomic): `{ NAME: value }` or
   * `[{ name, value, description?, purpose? }]`. Throws SecretsNotSetError
   * (with `errors`, `setSecrets`, `versions`) when any failed.
   */
  async setMany(secrets, { vault } = {}) {
    let items;
    if (Array.isArray(secrets)) items = secrets.map(secretItem);
    else if (secrets && typeof secrets === 'object') {
      items = Object.entries(secrets).map(([name, value], i) => secretItem({ name, value }, i));
    } else throw new TypeError('secrets must be { NAME: value } or an array of { name, value }');
    const answer = await this.#client.request('POST', '/api/vaults/secrets', {
      body: { vault_name: this.#vault(vault), secrets: items },
    });
    return { setSecrets: answer.set_secrets ?? [], versions: { ...(answer.versions ?? {}) } };
  }

  /** One secret's metadata (never its value); NotFoundError if missing. */
  async get(name, { vault } = {}) {
    const v = this.#vault(vault);
    return camel(await this.#client.request('GET', `/api/vaults/${seg(v, 'vault')}/secrets/${seg(name, 'name')}`));
  }

  /** True if the secret exists (HEAD). */
  async exists(name, { vault } = {}) {
    const v = this.#vault(vault);
    const response = await this.#client.send('HEAD', `/api/vaults/${seg(v, 'vault')}/secrets/${seg(name, 'name')}`, {
      okStatuses: [404],
      timeoutMs: this.#client.timeoutMs,
    });
    await response.body?.cancel().catch(() => {});
    return response.status !== 404;
  }

  /** Metadata of every secret of the vault, sorted by name. */
  async list({ vault } = {}) {
    const v = this.#vault(vault);
    const answer = await this.#client.request('GET', `/api/vaults/${seg(v, 'vault')}/secrets`);
    return camel(answer.secrets ?? []);
  }

  /** Deletes a secret; NotFoundError if missing. */
  async delete(name, { vault } = {}) {
    const v = this.#vault(vault);
    await this.#client.request('DELETE', `/api/vaults/${seg(v, 'vault')}/secrets/${seg(name, 'name')}`);
    return true;
  }

  /**
   * The vault's secrets rendered: masked previews (`mode: 'PreviewOnly'`,
   * the default here) or values (`mode: 'Full'`, audited).
   */
  async rendered({ vault, environment, mode = 'PreviewOnly', names } = {}) {
    const v = vault ?? environment ?? this.#client.vault;
    const query = {
      mode,
      'secret-name-filter': names && names.length ? names : undefined,
      environment,
    };
    return camel(await this.#client.request('GET', `/api/vaults/${seg(v, 'vault')}/rendered`, { query }));
  }
}

class Vars {
  #client;
  constructor(client) {
    this.#client = client;
  }

  /** Sets a non-secret variable (never masked). */
  async set(name, value, { vault } = {}) {
    if (typeof name !== 'string' || !name) throw new TypeError('name must be a non-empty string');
    await this.#client.request('POST', '/api/vaults/vars', {
      body: { vault_name: vault ?? this.#client.vault, var: { name, value: String(value) } },
    });
  }
}

class References {
  #client;
  constructor(client) {
    this.#client = client;
  }

  /**
   * Stores `value` under `name` in the scope (`workspace` or `user`) and
   * returns a `$secret:` reference to it. A non-string value is stored as
   * its compact JSON text.
   */
  async set(name, value, { scope = 'workspace', ttl } = {}) {
    if (value === undefined) throw new TypeError(`reference \`${name}\`: a value is needed`);
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    const answer = await this.#client.request('POST', '/api/secrets/set', {
      body: defined({ name, value: text, scope, ttl }),
    });
    return answer.ref;
  }

  /** A fresh `$secret:` reference to an existing secret of the scope (never its value). */
  async get(name, { scope = 'workspace', ttl } = {}) {
    const answer = await this.#client.request('POST', '/api/secrets/get', { body: defined({ name, scope, ttl }) });
    return answer.ref;
  }

  /** Deletes the secret of the scope; NotFoundError if missing. */
  async delete(name, { scope = 'workspace' } = {}) {
    await this.#client.request('POST', '/api/secrets/delete', { body: { name, scope } });
    return true;
  }
}

// ---------------------------------------------------------------- sandboxes

function execBody(command, options, stream) {
  const { secrets, env, cwd, timeoutMs, stdin, mask } = options;
  return defined({
    command: commandArray(command),
    secrets: grants(secrets),
    env: envMap(env),
    cwd,
    timeout_ms: timeoutMs,
    stdin,
    mask,
    stream: stream ? true : undefined,
  });
}

function bufferedResult(answer) {
  return defined({
    ...exitFields(answer),
    stdout: answer.stdout ?? '',
    stderr: answer.stderr ?? '',
    stdoutBase64: answer.stdout_base64,
    stderrBase64: answer.stderr_base64,
  });
}

/** Whole seconds for the server (a fraction rounds up: never shorter than asked). */
function seconds(value, what = 'timeout') {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${what} must be a finite number of seconds`);
  return Math.ceil(value);
}

function filePath(path) {
  if (typeof path !== 'string') throw new TypeError('path must be a string (relative to the working directory)');
  return path;
}

function toBytes(value) {
  if (typeof value === 'string') return new TextEncoder().encode(value);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`the data yielded a ${value === null ? 'null' : typeof value}, not bytes or a string`);
}

/** Marks the error of an upload's source, so that `send` throws it as it is. */
const uploadSource = Symbol('shroud.uploadSource');

/** An (async) iterable of chunks as a ReadableStream, pulled one chunk at a time. */
function iterableStream(iterable) {
  const iterator = typeof iterable[Symbol.asyncIterator] === 'function' ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
  return new ReadableStream(
    {
      async pull(controller) {
        try {
          for (;;) {
            const { value, done } = await iterator.next();
            if (done) {
              controller.close();
              return;
            }
            const bytes = toBytes(value);
            if (bytes.byteLength === 0) continue;
            controller.enqueue(bytes);
            return;
          }
        } catch (e) {
          const failed = new Error('the upload source failed', { cause: e });
          failed[uploadSource] = e;
          throw failed;
        }
      },
      async cancel(reason) {
        await iterator.return?.(reason);
      },
    },
    { highWaterMark: 1 },
  );
}

/** What `files.write` sends: bytes as they are, a stream or iterable as it is read. */
function uploadBody(data) {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof Blob !== 'undefined' && data instanceof Blob) return data;
  if (typeof ReadableStream !== 'undefined' && data instanceof ReadableStream) return data;
  if (data && (typeof data[Symbol.asyncIterator] === 'function' || typeof data[Symbol.iterator] === 'function')) {
    return iterableStream(data);
  }
  throw new TypeError('data must be a string, a Uint8Array (or ArrayBuffer, Blob), a ReadableStream or an (async) iterable of bytes');
}

function fileEntry(entry, parent) {
  const dir = parent === '.' || parent === '' ? '' : parent.replace(/\/+$/, '');
  const name = String(entry.name ?? '');
  return { ...camel(entry), name, type: entry.type ?? 'other', size: entry.size ?? null, path: dir ? `${dir}/${name}` : name };
}

/**
 * `sandbox.files`: the sandbox's working directory (raw bytes, streamed).
 * Paths are relative to it; one that leaves it is refused (ValidationError).
 * What is read comes back masked with every secret ever granted to the
 * sandbox. Each call renews the sandbox's lifetime.
 */
class Files {
  #client;
  #route;

  constructor(client, route) {
    this.#client = client;
    this.#route = route;
  }

  /**
   * Writes `data` to `path` (directories made, the file replaced atomically):
   * a string (UTF-8), bytes, a Blob, a ReadableStream or an (async) iterable
   * of chunks (a Node Readable, e.g. `fs.createReadStream`), streamed as it
   * is read. A full disk: PayloadTooLargeError (413).
   */
  async write(path, data, { signal } = {}) {
    const rawBody = uploadBody(data);
    const response = await this.#client.send('PUT', this.#route(), {
      query: { path: filePath(path) },
      rawBody,
      signal,
    });
    const answer = await response.json().catch(() => ({}));
    const written = String(answer.path ?? path);
    return { name: written.replace(/\/+$/, '').split('/').at(-1), type: 'file', size: answer.size ?? null, path: written };
  }

  /** The file's content as a ReadableStream of bytes (masked), read as it arrives. */
  async stream(path, { signal } = {}) {
    const response = await this.#client.send('GET', this.#route(), {
      query: { path: filePath(path) },
      headers: { accept: 'application/octet-stream, application/json' },
      signal,
    });
    return response.body ?? new ReadableStream({ start: (c) => c.close() });
  }

  /** The file's bytes (masked: a granted secret's value reads as `<secret:name>`). */
  async read(path, { signal } = {}) {
    const response = await this.#client.send('GET', this.#route(), {
      query: { path: filePath(path) },
      headers: { accept: 'application/octet-stream, application/json' },
      signal,
    });
    return new Uint8Array(await response.arrayBuffer());
  }

  /** The file's content as UTF-8 text (masked). */
  async readText(path, options = {}) {
    return new TextDecoder().decode(await this.read(path, options));
  }

  /** The entries of a directory (default: the working directory): `{ name, type, size, path }`. */
  async list(path = '.') {
    const answer = await this.#client.request('GET', this.#route(), { query: { path: filePath(path), list: 'true' } });
    const parent = typeof answer.path === 'string' ? answer.path : path;
    return (answer.entries ?? []).map((e) => fileEntry(e, parent));
  }

  /** Removes a file, a link, or a directory with everything in it; NotFoundError if missing. */
  async remove(path) {
    await this.#client.request('DELETE', this.#route(), { query: { path: filePath(path) } });
    return true;
  }

  /** True when `path` names an entry (its parent directory is listed). */
  async exists(path) {
    const target = filePath(path).replace(/\/+$/, '');
    const at = target.lastIndexOf('/');
    const name = target.slice(at + 1);
    if (name === '' || name === '.') return true;
    try {
      return (await this.list(at < 0 ? '.' : target.slice(0, at) || '.')).some((e) => e.name === name);
    } catch (e) {
      if (e instanceof ShroudError && (e.status === 404 || e.status === 400)) return false;
      throw e;
    }
  }
}

/**
 * A command running in the background of a sandbox
 * (`sandbox.commands.run(cmd, { background: true })`). `for await (const
 * event of handle)` yields its masked output events from the start, then
 * one exit event (one log, followed while it is written, shared by every
 * iteration and `wait()`); `wait()` resolves with the result; `kill()`
 * stops it. `onStdout`/`onStderr` given to `run` are called as the output
 * comes. `await using` kills it at the end of the block.
 */
export class CommandHandle {
  #client;
  #route;
  #commands;
  #onStdout;
  #onStderr;
  #state;

  constructor(client, route, commands, pid, { onStdout, onStderr } = {}) {
    this.#client = client;
    this.#route = route;
    this.#commands = commands;
    /** The process id in the API. */
    this.pid = pid;
    this.#onStdout = onStdout;
    this.#onStderr = onStderr;
    if (onStdout || onStderr) this.#start();
  }

  toJSON() {
    return { pid: this.pid };
  }

  #start() {
    if (!this.#state) {
      const state = { events: [], waiters: [], done: false, error: undefined, controller: new AbortController() };
      this.#state = state;
      state.pump = this.#pump(state);
    }
    return this.#state;
  }

  async #pump(state) {
    const wake = () => {
      const waiters = state.waiters.splice(0);
      for (const w of waiters) w();
    };
    const stream = new ExecStream(
      (signal) =>
        this.#client.send('GET', `${this.#route()}/log`, {
          query: { follow: 'true' },
          signal,
          headers: { accept: 'application/x-ndjson' },
        }),
      { signal: state.controller.signal, lineFramed: true },
    );
    try {
      for await (const event of stream) {
        state.events.push(event);
        wake();
        if (event.type === 'stdout' && this.#onStdout) await this.#onStdout(event.data, event);
        else if (event.type === 'stderr' && this.#onStderr) await this.#onStderr(event.data, event);
      }
    } catch (e) {
      // Kept for wait() and the iterators (never an unhandled rejection).
      if (!state.controller.signal.aborted) state.error = e;
    } finally {
      state.done = true;
      wake();
    }
  }

  async *[Symbol.asyncIterator]() {
    const state = this.#start();
    let next = 0;
    for (;;) {
      while (next < state.events.length) yield state.events[next++];
      if (state.done) {
        if (state.error) throw state.error;
        return;
      }
      await new Promise((resolve) => state.waiters.push(resolve));
    }
  }

  /**
   * Follows the output to the end: `{ exitCode, signal, stdout, stderr,
   * status ('exited' | 'stopped'), ... }`. A non-zero exit is not an error.
   */
  async wait() {
    const state = this.#start();
    await state.pump;
    if (state.error) throw state.error;
    const exit = state.events.find((e) => e.type === 'exit');
    if (!exit) throw new ConnectionError(`the log of process ${this.pid} ended without its exit event`);
    let stdout = '';
    let stderr = '';
    for (const e of state.events) {
      if (e.type === 'stdout') stdout += e.data;
      else if (e.type === 'stderr') stderr += e.data;
    }
    const { type: _t, ts: _ts, ...fields } = exit;
    let status = fields.status;
    if (status === undefined) {
      status = (await this.info().catch(() => undefined))?.status;
    }
    return defined({ ...fields, status, stdout, stderr });
  }

  /** Stops it (SIGTERM, SIGKILL after 10 s); false when there is no such command. */
  kill() {
    return this.#commands.kill(this.pid);
  }

  /** Its entry of `commands.list()`; NotFoundError when there is none. */
  async info() {
    const found = (await this.#commands.list()).find((p) => p.processId === this.pid);
    if (!found) throw new NotFoundError(`process ${this.pid} not found`, { status: 404, error: `process ${this.pid} not found` });
    return found;
  }

  /** Stops following the output; the command goes on running. */
  disconnect() {
    const state = this.#state;
    this.#state = undefined;
    state?.controller.abort();
  }

  /** `await using handle = await sandbox.commands.run(cmd, { background: true })` kills it at the end. */
  async [asyncDispose]() {
    try {
      await this.kill();
    } catch {
      // gone with its sandbox
    } finally {
      this.disconnect();
    }
  }
}

/** A sandbox: a working directory and template its commands run in. */
export class Sandbox {
  #client;

  constructor(client, info) {
    this.#client = client;
    this.id = info.id;
    this.template = info.template;
    this.vault = info.vault;
    this.network = info.network;
    this.limits = info.limits;
    this.isolation = info.isolation;
    /** Seconds idle after which the server deletes it, and when that is (as last known). */
    this.timeoutS = info.timeoutS;
    this.expiresAt = info.expiresAt;
    /** E2B-style commands: `sandbox.commands.run(cmd, { envs, onStdout, onStderr, background })`. */
    this.commands = new Commands(this, client, (suffix = '') => this.#path(suffix));
    /** The working directory's files: `write`, `read`, `readText`, `stream`, `list`, `remove`. */
    this.files = new Files(client, () => this.#path('/files'));
  }

  /**
   * `GET /api/sandboxes/{id}`: `{ id, template, vault, node, createdAt,
   * lastExit, lastExecAt, timeoutS, expiresAt }` (does not renew the lifetime).
   */
  async info() {
    const info = camel(await this.#client.request('GET', this.#path()));
    this.timeoutS = info.timeoutS;
    this.expiresAt = info.expiresAt;
    return info;
  }

  /** E2B's name for `info()`. */
  getInfo() {
    return this.info();
  }

  /** A new lifetime: deleted after `seconds` idle, counted from now (1 s to a week); the new info. */
  async setTimeout(secondsIdle) {
    const info = camel(
      await this.#client.request('POST', this.#path('/timeout'), { body: { timeout_s: seconds(secondsIdle) } }),
    );
    this.timeoutS = info.timeoutS;
    this.expiresAt = info.expiresAt;
    return info;
  }

  /** True while the sandbox exists (false once deleted or expired). */
  async isRunning() {
    try {
      await this.info();
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  toJSON() {
    return defined({ id: this.id, template: this.template, vault: this.vault });
  }

  #path(suffix = '') {
    return `/api/sandboxes/${seg(this.id, 'sandbox id')}${suffix}`;
  }

  /**
   * Runs a command (an array, or a string run by `sh -c`) and returns its
   * masked output and exit code. With `onStdout`/`onStderr` the output is
   * streamed to them as it comes; the result still has all of it.
   */
  async exec(command, options = {}) {
    if (options.onStdout || options.onStderr) {
      let stdout = '';
      let stderr = '';
      let exit;
      for await (const event of this.stream(command, options)) {
        if (event.type === 'stdout') {
          stdout += event.data;
          if (options.onStdout) await options.onStdout(event.data, event);
        } else if (event.type === 'stderr') {
          stderr += event.data;
          if (options.onStderr) await options.onStderr(event.data, event);
        } else if (event.type === 'exit') exit = event;
      }
      const { type: _t, ts: _ts, ...fields } = exit;
      return { ...fields, stdout, stderr };
    }
    const body = execBody(command, options, false);
    const answer = await this.#client.request('POST', this.#path('/exec'), { body, signal: options.signal, timeoutMs: undefined });
    return bufferedResult(answer);
  }

  /**
   * Runs a command and yields its events as they happen:
   * `for await (const event of sandbox.stream(cmd))`. Leaving the loop early
   * closes the request, which kills the command.
   */
  stream(command, options = {}) {
    const body = execBody(command, options, true);
    return new ExecStream(
      (signal) => this.#client.send('POST', this.#path('/exec'), { body, signal, headers: { accept: 'application/x-ndjson' } }),
      { signal: options.signal },
    );
  }

  /** Deletes the sandbox (NotFoundError if it is already gone). */
  async delete() {
    await this.#client.request('DELETE', this.#path());
    return true;
  }

  /** Deletes the sandbox; one that is already gone is fine. */
  async close() {
    try {
      await this.delete();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }

  /** `await using sandbox = await rt.sandboxes.create(...)` deletes it at the end of the block. */
  async [asyncDispose]() {
    await this.close();
  }
}

class Commands {
  #sandbox;
  #client;
  #path;
  constructor(sandbox, client, path) {
    this.#sandbox = sandbox;
    this.#client = client;
    this.#path = path;
  }

  /**
   * E2B-style alias of `sandbox.exec`: `run(cmd, { envs, cwd, timeoutMs,
   * onStdout, onStderr })` → the result. With `background: true` it
   * resolves at once with a CommandHandle (`pid`, `wait()`, `kill()`,
   * `for await`); the command runs until it ends, is killed, or the sandbox
   * is deleted, with the same environment, grants, masking and limits.
   */
  async run(command, { envs, env, background, ...options } = {}) {
    if (!background) return this.#sandbox.exec(command, { ...options, env: envs ?? env });
    const body = { ...execBody(command, { ...options, env: envs ?? env }, false), background: true };
    const answer = await this.#client.request('POST', this.#path('/exec'), { body, signal: options.signal });
    const pid = answer.process_id ?? answer.pid;
    if (typeof pid !== 'number') throw new ConnectionError('the server did not answer a process_id for the background command');
    return this.connect(pid, options);
  }

  /** A handle on background command `pid` (no request is made). */
  connect(pid, { onStdout, onStderr } = {}) {
    return new CommandHandle(this.#client, () => this.#path(`/processes/${encodeURIComponent(String(pid))}`), this, pid, {
      onStdout,
      onStderr,
    });
  }

  /** The sandbox's background commands: `{ processId (and pid), command, status, exitCode, startedAt, endedAt }`. */
  async list() {
    const answer = await this.#client.request('GET', this.#path('/processes'));
    return (answer.processes ?? []).map((p) => ({ ...camel(p), pid: p.process_id ?? p.pid }));
  }

  /** Stops background command `pid` (SIGTERM, SIGKILL after 10 s); false when there is none. */
  async kill(pid) {
    try {
      await this.#client.request('DELETE', this.#path(`/processes/${encodeURIComponent(String(pid))}`));
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
}

class Sandboxes {
  #client;
  constructor(client) {
    this.#client = client;
  }

  /** Creates a sandbox of a template (`bash`, `python-3`, `nodejs-20`, ...). */
  async create(options = {}) {
    const opts = typeof options === 'string' ? { template: options } : options;
    const { template, secrets, env, vault, strict, timeoutS, timeout } = opts;
    if (typeof template !== 'string' || !template) throw new TypeError('template must be a non-empty string');
    const v = vault ?? this.#client.vault;
    const lifetime = timeoutS ?? timeout;
    const answer = await this.#client.request('POST', '/api/sandboxes', {
      body: defined({
        template,
        secrets: grants(secrets),
        env: envMap(env),
        vault: v,
        strict,
        timeout_s: lifetime === undefined ? undefined : seconds(lifetime),
      }),
    });
    return new Sandbox(this.#client, { ...camel(answer), vault: v });
  }

  /** One of this token's sandboxes (`sandbox.info()` of it); NotFoundError when gone. */
  get(id) {
    return this.attach(id).info();
  }

  /** A handle on an existing sandbox (no request is made). */
  attach(id, { vault } = {}) {
    return new Sandbox(this.#client, { id, vault });
  }

  /** This token's sandboxes, oldest first. */
  async list() {
    const answer = await this.#client.request('GET', '/api/sandboxes');
    return camel(answer.sandboxes ?? []);
  }
}

// ---------------------------------------------------------------- deployments

const DEPLOYMENT_KEYS = [
  'runtimeSlug',
  'templateSlug',
  'apiSlug',
  'secrets',
  'command',
  'mode',
  'vault',
  'env',
  'replicas',
  'sockets',
  'notify',
];

class Deployments {
  #client;
  constructor(client) {
    this.#client = client;
  }

  /** Creates (and starts) a deployment; returns `{ slug }`. */
  async create(spec) {
    if (!spec || typeof spec !== 'object') throw new TypeError('create needs { templateSlug, apiSlug, command, ... }');
    const body = {};
    for (const key of DEPLOYMENT_KEYS) if (spec[key] !== undefined) body[key] = spec[key];
    body.vault ??= this.#client.vault;
    if (spec.readyAfter !== undefined) body.ready_after = spec.readyAfter;
    if (body.secrets !== undefined) body.secrets = grants(body.secrets);
    if (body.env !== undefined) body.env = envMap(body.env);
    if (body.command !== undefined) body.command = commandArray(body.command);
    return camel(await this.#client.request('POST', '/api/deployments', { body }));
  }

  /** The deployments of the vaults this token has a grant on. */
  async list() {
    const answer = await this.#client.request('GET', '/api/deployments');
    return camel(answer.deployments ?? []);
  }

  /** The deployment's log lines (JSON lines): `for await (const line of rt.deployments.logs(slug, { follow: true }))`. */
  logs(slug, { follow, tail, signal } = {}) {
    const path = `/api/deployments/${seg(slug, 'slug')}/logs`;
    const query = { follow: follow ? 'true' : undefined, tail };
    return new JsonLineStream((s) => this.#client.send('GET', path, { query, signal: s }), camel, { signal });
  }

  async #control(slug, verb) {
    return camel(await this.#client.request('POST', `/api/deployments/${seg(slug, 'slug')}/${verb}`));
  }

  stop(slug) {
    return this.#control(slug, 'stop');
  }

  start(slug) {
    return this.#control(slug, 'start');
  }

  /** Rolls the instances, one at a time, with no gap. */
  restart(slug) {
    return this.#control(slug, 'restart');
  }

  async delete(slug) {
    return camel(await this.#client.request('DELETE', `/api/deployments/${seg(slug, 'slug')}`));
  }
}

class Agents {
  #client;
  constructor(client) {
    this.#client = client;
  }

  /**
   * Starts a run of an agent deployment with `{ message, params }` on its
   * stdin. With `wait` (the default) answers when the run ended, with the
   * run (status, exitCode, log); without, `{ runId }` at once.
   */
  async run(slug, { message, params, wait = true, timeoutS } = {}) {
    const answer = await this.#client.request('POST', `/api/agents/${seg(slug, 'slug')}/runs`, {
      query: { wait: wait ? 'true' : undefined },
      body: defined({ message, params, timeout_s: timeoutS }),
      timeoutMs: undefined,
    });
    return camel(answer);
  }

  /** The runs of an agent deployment, oldest first (without their logs). */
  async runs(slug) {
    const answer = await this.#client.request('GET', `/api/agents/${seg(slug, 'slug')}/runs`);
    return camel(answer.runs ?? []);
  }
}

class Runs {
  #client;
  constructor(client) {
    this.#client = client;
  }

  /** One run: status, exitCode, startedAt, endedAt, the masked log. */
  async get(id) {
    return camel(await this.#client.request('GET', `/api/runs/${seg(id, 'run id')}`));
  }

  /** The run's log as JSON lines; with `follow`, until the run's exit line. */
  log(id, { follow, tail, signal } = {}) {
    const path = `/api/runs/${seg(id, 'run id')}/log`;
    const query = { follow: follow ? 'true' : undefined, tail };
    return new JsonLineStream((s) => this.#client.send('GET', path, { query, signal: s }), camel, { signal });
  }
}

export default Shroud;
