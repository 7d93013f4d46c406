// Server changes landing with issue 14 (see notes/sdk-contract.md): health,
// string commands and cwd on exec, purposes, 422 field paths, the bulk
// error text, rendered's PreviewOnly default, any-JSON reference values,
// awsv4 fetch auth, the full exit fields on a stream. These fail against a
// server built before them; they are the acceptance tests of the new one.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { SecretsNotSetError, Shroud, ValidationError } from '@shroud/sdk';
import { startServer } from '../harness/server.js';
import { startEcho } from '../harness/echo.js';

let server;
let echo;
let rt;
let sandbox;

before(async () => {
  echo = await startEcho();
  server = await startServer({ args: ['--fetch-allow', '127.0.0.1/32'] });
  const token = await server.token('ci', ['ci:read', 'ci:write', 'workspace:read', 'workspace:write']);
  rt = new Shroud({ baseUrl: server.url, token, vault: 'ci' });
  await rt.secrets.set('S', 'landing-secret-value-31337');
  sandbox = await rt.sandboxes.create({ template: 'bash' });
});

after(async () => {
  await sandbox?.close().catch(() => {});
  await server?.stop();
  await echo?.close();
});

/** Reads a streamed exec's raw JSON lines. */
async function rawStream(body) {
  const response = await rt.send('POST', `/api/sandboxes/${sandbox.id}/exec`, { body: { ...body, stream: true } });
  return (await response.text())
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

describe('health', () => {
  test('GET /api/health without a token', async () => {
    const anonymous = new Shroud({ baseUrl: server.url, token: '' });
    const health = await anonymous.health();
    assert.equal(health.status, 'ok');
    assert.equal(health.version, '0.1.0');
    assert.equal(health.store.reachable, true);
  });
});

describe('exec', () => {
  test('a string command is run by sh -c on the server', async () => {
    const answer = await rt.request('POST', `/api/sandboxes/${sandbox.id}/exec`, {
      body: { command: 'echo "$0" && echo two', secrets: [] },
    });
    assert.equal(answer.exit_code, 0);
    assert.equal(answer.stdout, 'sh\ntwo\n');
  });

  test('cwd: relative to the working directory, never outside it', async () => {
    await sandbox.exec(['mkdir', '-p', 'sub/dir']);
    const r = await sandbox.exec(['pwd'], { cwd: 'sub/dir' });
    assert.equal(r.exitCode, 0);
    assert.match(r.stdout, /\/sub\/dir\n$/);
    const streamed = await sandbox.exec('pwd', { cwd: 'sub', onStdout: () => {} });
    assert.match(streamed.stdout, /\/sub\n$/);
    await assert.rejects(sandbox.exec(['pwd'], { cwd: '../..' }), (e) => e instanceof ValidationError && e.status === 400);
    await assert.rejects(sandbox.exec(['pwd'], { cwd: '/etc' }), ValidationError);
  });

  test('the exit line of a stream has the buffered answer’s fields', async () => {
    const lines = await rawStream({ command: ['sleep', '5'], timeout_ms: 200 });
    const exit = lines.at(-1);
    assert.equal(exit.event, 'exit');
    assert.equal(exit.exit_code, 124);
    assert.equal(exit.code, 124);
    assert.equal(exit.timed_out, true);
    assert.equal(exit.output_limit_reached, false);
    assert.equal(exit.cancelled, false);
    assert.ok('signal' in exit && 'duration_ms' in exit);
    // and the SDK reports it
    const ev = [];
    for await (const e of sandbox.stream(['sleep', '5'], { timeoutMs: 200 })) ev.push(e);
    assert.equal(ev.at(-1).timedOut, true);
  });
});

describe('secrets', () => {
  test('purpose: set, shown in metadata and listings, default Other', async () => {
    assert.equal(await rt.secrets.set('GH_KEY', 'ghp-purpose-value', { purpose: 'APIKey' }), 1);
    assert.equal((await rt.secrets.get('GH_KEY')).purpose, 'APIKey');
    await rt.secrets.setMany([{ name: 'DEPLOY_KEY', value: 'ssh-key-value', purpose: 'SSHKey' }, { name: 'PLAIN', value: 'plain-value' }]);
    const list = await rt.secrets.list();
    const purpose = Object.fromEntries(list.map((s) => [s.name, s.purpose]));
    assert.equal(purpose.GH_KEY, 'APIKey');
    assert.equal(purpose.DEPLOY_KEY, 'SSHKey');
    assert.equal(purpose.PLAIN, 'Other');
    assert.equal(purpose.S, 'Other');
  });

  test('the bulk 400 text: one line per failed secret', async () => {
    const err = await rt.secrets
      .setMany([{ name: 'OK_ONE', value: 'ok-one-value' }, { name: 'EMPTY_ONE', value: '' }])
      .then(() => assert.fail('no error'), (e) => e);
    assert.ok(err instanceof SecretsNotSetError);
    assert.match(err.error, /^The following secrets could not be set:\n {2}EMPTY_ONE: .+$/);
    assert.deepEqual(err.setSecrets, ['OK_ONE']);
  });

  test('a field of the wrong type: 422 naming its path', async () => {
    await assert.rejects(
      rt.request('POST', '/api/vaults/secrets', {
        body: { vault_name: 'ci', secrets: [{ name: 'A', secret: 'a-value' }, { name: 'B', secret: 5 }] },
      }),
      (e) => {
        assert.ok(e instanceof ValidationError);
        assert.equal(e.status, 422);
        assert.match(e.error, /secrets\[1\]\.secret: expected a string/);
        return true;
      },
    );
    await assert.rejects(
      rt.request('POST', `/api/sandboxes/${sandbox.id}/exec`, { body: { command: ['true'], timeout_ms: 'soon' } }),
      (e) => e.status === 422 && /timeout_ms/.test(e.error),
    );
  });

  test('every non-2xx answer is a JSON error', async () => {
    const response = await fetch(`${server.url}/api/vaults/secrets`, { method: 'DELETE' });
    const body = await response.json();
    assert.ok(response.status >= 400);
    assert.equal(typeof body.error, 'string');
    assert.ok(Array.isArray(body.errors));
  });

  test('rendered without mode gives previews (PreviewOnly)', async () => {
    const answer = await rt.request('GET', '/api/vaults/ci/rendered');
    assert.equal(answer.mode, 'PreviewOnly');
    assert.ok(answer.secrets.every((s) => 'preview' in s && !('value' in s)));
  });
});

describe('references and fetch', () => {
  test('POST /api/secrets/set takes any JSON value', async () => {
    const answer = await rt.request('POST', '/api/secrets/set', {
      body: { name: 'CFG', value: { a: [1, 2], b: true }, scope: 'workspace' },
    });
    assert.match(answer.ref, /^\$secret:/);
    assert.equal(await server.cli('secret', 'reveal', 'CFG', '--vault', 'workspace'), '{"a":[1,2],"b":true}');
  });

  test('awsv4 auth signs the request', async () => {
    const ref = await rt.references.set('AWS_SECRET', 'aws-secret-access-key-value');
    const answer = await rt.fetch(`${echo.url}/bucket/key`, {
      auth: { type: 'awsv4', accessKeyId: 'AKIDEXAMPLE', secretAccessKey: ref, sessionToken: 'session-tok', region: 'us-east-1', service: 's3' },
    });
    assert.equal(answer.status, 200);
    const seen = echo.received.at(-1);
    assert.match(seen.headers.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/s3\/aws4_request/);
    assert.ok(seen.headers['x-amz-date']);
    assert.ok(seen.headers['x-amz-content-sha256']);
    assert.equal(seen.headers['x-amz-security-token'], 'session-tok');
  });
});
