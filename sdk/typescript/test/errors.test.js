// The error classes and the status they map from, with a fake fetch (no
// server): the statuses a test server does not answer on demand (409, 429,
// 5xx, a body that is not JSON), an unreachable server, and the options.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  AuthenticationError,
  ConflictError,
  ConnectionError,
  NotFoundError,
  PermissionError,
  RateLimitError,
  SecretsNotSetError,
  ServerError,
  Shroud,
  ShroudError,
  ValidationError,
  PayloadTooLargeError,
} from '@shroud/sdk';

function fake(status, body, headers = {}) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url: String(url), init });
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return new Response(status === 204 ? null : text, { status, headers: { 'content-type': 'application/json', ...headers } });
  };
  return { fetch, calls };
}

test('each status has its class; status, error and errors are kept', async () => {
  const cases = [
    [400, ValidationError],
    [413, PayloadTooLargeError],
    [415, ValidationError],
    [422, ValidationError],
    [401, AuthenticationError],
    [403, PermissionError],
    [404, NotFoundError],
    [409, ConflictError],
    [429, RateLimitError],
    [500, ServerError],
    [503, ServerError],
    [418, ShroudError],
  ];
  for (const [status, Class] of cases) {
    const { fetch } = fake(status, { error: `text ${status}`, errors: [{ name: 'A', error: 'bad' }] }, { 'retry-after': '2' });
    const rt = new Shroud({ baseUrl: 'http://shroud.test', token: 't', fetch });
    const e = await rt.secrets.list().then(() => assert.fail('no error'), (x) => x);
    assert.ok(e instanceof Class, `${status} → ${e.name}`);
    if (status === 413) assert.ok(e instanceof ValidationError);
    assert.ok(e instanceof ShroudError);
    assert.equal(e.name, Class.name);
    assert.equal(e.status, status);
    assert.equal(e.error, `text ${status}`);
    assert.deepEqual(e.errors, [{ name: 'A', error: 'bad' }]);
    assert.equal(e.message, `GET /api/vaults/default/secrets: ${status} text ${status}`);
    if (status === 429 || status === 503) assert.equal(e.retryAfter, 2);
  }
});

test('the bulk 400 is a SecretsNotSetError with setSecrets and versions', async () => {
  const { fetch, calls } = fake(400, {
    error: 'The following secrets could not be set:\n  B: value is empty',
    errors: [{ name: 'B', error: 'value is empty' }],
    set_secrets: ['A'],
    versions: { A: 3 },
  });
  const rt = new Shroud({ baseUrl: 'http://shroud.test/', token: 't', fetch, vault: 'ci' });
  const e = await rt.secrets.setMany({ A: 'value-of-a', B: '' }).then(() => assert.fail('no error'), (x) => x);
  assert.ok(e instanceof SecretsNotSetError && e instanceof ValidationError);
  assert.deepEqual(e.setSecrets, ['A']);
  assert.deepEqual(e.versions, { A: 3 });
  assert.ok(!e.message.includes('value-of-a'));
  // what was sent
  assert.equal(calls[0].url, 'http://shroud.test/api/vaults/secrets');
  assert.equal(calls[0].init.headers.authorization, 'Bearer t');
  assert.equal(calls[0].init.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(calls[0].init.body), {
    vault_name: 'ci',
    secrets: [
      { name: 'A', secret: 'value-of-a' },
      { name: 'B', secret: '' },
    ],
  });
});

test('a body that is not JSON: the status text', async () => {
  const { fetch } = fake(502, '<html>bad gateway</html>');
  const rt = new Shroud({ baseUrl: 'http://shroud.test', token: 't', fetch });
  const e = await rt.secrets.list().then(() => assert.fail('no error'), (x) => x);
  assert.ok(e instanceof ServerError);
  assert.equal(e.status, 502);
  assert.deepEqual(e.errors, []);
});

test('no server: ConnectionError, status 0', async () => {
  const rt = new Shroud({ baseUrl: 'http://127.0.0.1:1', token: 'shr_secret_token' });
  const e = await rt.secrets.list().then(() => assert.fail('no error'), (x) => x);
  assert.ok(e instanceof ConnectionError && e instanceof ShroudError);
  assert.equal(e.status, 0);
  assert.match(e.message, /cannot reach shroud at http:\/\/127\.0\.0\.1:1/);
  assert.ok(!e.message.includes('shr_secret_token'));
});

test('health answers the 503 body instead of throwing', async () => {
  const { fetch, calls } = fake(503, { status: 'unavailable', version: '0.1.0', store: { reachable: false } });
  const rt = new Shroud({ baseUrl: 'http://shroud.test', fetch, token: '' });
  assert.deepEqual(await rt.health(), { status: 'unavailable', version: '0.1.0', store: { reachable: false } });
  assert.equal(calls[0].init.headers.authorization, undefined);
});

test('defaults from $SHROUD_URL and $SHROUD_TOKEN', async () => {
  const saved = { url: process.env.SHROUD_URL, token: process.env.SHROUD_TOKEN };
  process.env.SHROUD_URL = 'http://from-env.test:9';
  process.env.SHROUD_TOKEN = 'env-token';
  try {
    const { fetch, calls } = fake(200, { secrets: [] });
    const rt = new Shroud({ fetch });
    assert.equal(rt.baseUrl, 'http://from-env.test:9');
    await rt.secrets.list();
    assert.equal(calls[0].init.headers.authorization, 'Bearer env-token');
    delete process.env.SHROUD_URL;
    assert.equal(new Shroud({ fetch }).baseUrl, 'http://127.0.0.1:7878');
  } finally {
    if (saved.url === undefined) delete process.env.SHROUD_URL;
    else process.env.SHROUD_URL = saved.url;
    if (saved.token === undefined) delete process.env.SHROUD_TOKEN;
    else process.env.SHROUD_TOKEN = saved.token;
  }
});

test('request bodies: exec, deployments, fetch auth, rendered query', async () => {
  const { fetch, calls } = fake(200, { exit_code: 0, stdout: '', stderr: '', secret_versions: { MY_KEY: 1 } });
  const rt = new Shroud({ baseUrl: 'http://shroud.test', token: 't', fetch, vault: 'ci' });
  const sb = rt.sandboxes.attach('abc');
  await sb.exec('echo hi', { secrets: { TOKEN: 'API_KEY', S: 'S' }, env: { N: 1 }, cwd: 'sub', timeoutMs: 5, stdin: 'x', mask: 'stars' });
  assert.deepEqual(JSON.parse(calls.at(-1).init.body), {
    command: ['sh', '-c', 'echo hi'],
    secrets: ['TOKEN=API_KEY', 'S'],
    env: { N: '1' },
    cwd: 'sub',
    timeout_ms: 5,
    stdin: 'x',
    mask: 'stars',
  });
  await rt.deployments.create({ templateSlug: 'bash', apiSlug: 'w', command: 'run it', readyAfter: 2 });
  assert.deepEqual(JSON.parse(calls.at(-1).init.body), {
    templateSlug: 'bash',
    apiSlug: 'w',
    command: ['sh', '-c', 'run it'],
    vault: 'ci',
    ready_after: 2,
  });
  await rt.fetch('https://x.test', { auth: { type: 'awsv4', accessKeyId: 'AK', secretAccessKey: 'SK', region: 'r', service: 's' } });
  assert.deepEqual(JSON.parse(calls.at(-1).init.body).auth, {
    type: 'awsv4',
    access_key_id: 'AK',
    secret_access_key: 'SK',
    region: 'r',
    service: 's',
  });
  await rt.secrets.rendered({ names: ['A', 'B'] });
  const url = new URL(calls.at(-1).url);
  assert.equal(url.pathname, '/api/vaults/ci/rendered');
  assert.equal(url.searchParams.get('mode'), 'PreviewOnly');
  assert.equal(url.searchParams.get('secret-name-filter'), 'A,B');
  // maps keyed by names keep their keys
  const list = await rt.deployments.list();
  assert.deepEqual(list, []);
  const d = await rt.request('GET', '/x');
  assert.deepEqual(d.secret_versions, { MY_KEY: 1 });
});

test('bad arguments are TypeErrors that quote no value', async () => {
  const rt = new Shroud({ baseUrl: 'http://shroud.test', token: 't', fetch: fake(200, {}).fetch });
  await assert.rejects(rt.secrets.set('A', { not: 'a string' }), TypeError);
  await assert.rejects(rt.secrets.set('A', 'v', { purpose: 'Wrong' }), TypeError);
  await assert.rejects(rt.sandboxes.create({}), TypeError);
  await assert.rejects(rt.sandboxes.attach('x').exec([]), TypeError);
  await assert.rejects(rt.sandboxes.attach('x').exec('  '), TypeError);
  const e = await rt.sandboxes.attach('x').exec('true', { env: { K: { secret: 'hidden-thing' } } }).catch((x) => x);
  assert.ok(e instanceof TypeError && !e.message.includes('hidden-thing'));
});
