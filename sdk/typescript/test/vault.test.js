// Secrets, vars, references, rendered, fetch, errors: against a real `shroud serve`.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';

import {
  AuthenticationError,
  NotFoundError,
  PermissionError,
  SecretsNotSetError,
  Shroud,
  ShroudError,
  ValidationError,
} from '@shroud/sdk';
import { startServer } from '../harness/server.js';
import { startEcho } from '../harness/echo.js';

let server;
let echo;
let rt; // ci:read, ci:write, workspace:read, workspace:write
let token;

before(async () => {
  echo = await startEcho();
  server = await startServer({ args: ['--fetch-allow', '127.0.0.1/32'] });
  token = await server.token('ci', ['ci:read', 'ci:write', 'workspace:read', 'workspace:write']);
  rt = new Shroud({ baseUrl: server.url, token, vault: 'ci' });
});

after(async () => {
  await server?.stop();
  await echo?.close();
});

/** Asserts that nothing reachable from `error` holds `value`. */
function assertNoValue(error, value) {
  assert.ok(!error.message.includes(value), 'the message holds the value');
  assert.ok(!String(error.error).includes(value), 'error holds the value');
  assert.ok(!JSON.stringify(error.errors).includes(value), 'errors hold the value');
  assert.ok(!inspect(error, { depth: 5 }).includes(value), 'inspect holds the value');
  assert.ok(!inspect(error, { depth: 5, showHidden: true }).includes(value), 'the hidden body holds the value');
  assert.ok(!String(error.stack).includes(value), 'the stack holds the value');
}

describe('secrets', () => {
  test('set returns the version, +1 on every set', async () => {
    assert.equal(await rt.secrets.set('DATABASE_URL', 'postgres://u:pw-one@db/app'), 1);
    assert.equal(await rt.secrets.set('DATABASE_URL', 'postgres://u:pw-two@db/app', { description: 'main db' }), 2);
  });

  test('get gives metadata, never the value', async () => {
    const meta = await rt.secrets.get('DATABASE_URL');
    assert.equal(meta.name, 'DATABASE_URL');
    assert.equal(meta.version, 2);
    assert.equal(meta.description, 'main db');
    assert.match(meta.updatedAt, /^\d{4}-\d\d-\d\dT/);
    assert.equal(meta.expiresAt, null);
    assert.ok(!JSON.stringify(meta).includes('pw-two'));
  });

  test('list: sorted metadata of the vault', async () => {
    await rt.secrets.set('AAA_FIRST', 'value-aaa');
    const list = await rt.secrets.list();
    const names = list.map((s) => s.name);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes('AAA_FIRST') && names.includes('DATABASE_URL'));
    assert.ok(!JSON.stringify(list).includes('value-aaa'));
    assert.deepEqual(await rt.secrets.list({ vault: 'workspace' }), []);
  });

  test('exists (HEAD) and delete', async () => {
    await rt.secrets.set('TO_DELETE', 'bye-bye-value');
    assert.equal(await rt.secrets.exists('TO_DELETE'), true);
    assert.equal(await rt.secrets.delete('TO_DELETE'), true);
    assert.equal(await rt.secrets.exists('TO_DELETE'), false);
    await assert.rejects(rt.secrets.delete('TO_DELETE'), (e) => {
      assert.ok(e instanceof NotFoundError && e instanceof ShroudError);
      assert.equal(e.status, 404);
      assert.match(e.error, /TO_DELETE/);
      assert.deepEqual(e.errors, []);
      return true;
    });
    await assert.rejects(rt.secrets.get('TO_DELETE'), NotFoundError);
  });

  test('setMany with an object: every one set', async () => {
    const r = await rt.secrets.setMany({ BULK_A: 'bulk-a-value', BULK_B: 'bulk-b-value' });
    assert.deepEqual([...r.setSecrets].sort(), ['BULK_A', 'BULK_B']);
    assert.deepEqual(r.versions, { BULK_A: 1, BULK_B: 1 });
  });

  test('setMany partial failure: an empty value fails, the others are set', async () => {
    const err = await rt.secrets
      .setMany([
        { name: 'PART_OK1', value: 'part-ok-one-value' },
        { name: 'PART_EMPTY', value: '' },
        { name: 'PART_OK2', value: 'part-ok-two-value', description: 'second' },
      ])
      .then(() => assert.fail('no error'), (e) => e);
    assert.ok(err instanceof SecretsNotSetError);
    assert.ok(err instanceof ValidationError && err instanceof ShroudError);
    assert.equal(err.status, 400);
    assert.deepEqual(err.errors.map((e) => e.name), ['PART_EMPTY']);
    assert.match(err.errors[0].error, /empty/);
    assert.deepEqual([...err.setSecrets].sort(), ['PART_OK1', 'PART_OK2']);
    assert.deepEqual(err.versions, { PART_OK1: 1, PART_OK2: 1 });
    assertNoValue(err, 'part-ok-one-value');
    assertNoValue(err, 'part-ok-two-value');
    assert.equal(await rt.secrets.exists('PART_OK1'), true);
    assert.equal(await rt.secrets.exists('PART_OK2'), true);
    assert.equal(await rt.secrets.exists('PART_EMPTY'), false);
  });

  test('set of a single bad secret throws, the value in no message', async () => {
    const big = 'TOO-LONG-VALUE-'.repeat(5000); // > 64 KiB
    const err = await rt.secrets.set('TOO_BIG', big).then(() => assert.fail('no error'), (e) => e);
    assert.ok(err instanceof SecretsNotSetError);
    assertNoValue(err, 'TOO-LONG-VALUE-');
    const bad = await rt.secrets.set('bad name!', 'invalid-name-value-xyz').then(() => assert.fail('no error'), (e) => e);
    assert.ok(bad instanceof ValidationError);
    assertNoValue(bad, 'invalid-name-value-xyz');
    // Client-side checks do not quote the value either.
    const typed = await rt.secrets.set('NUM', 12345678).then(() => assert.fail('no error'), (e) => e);
    assert.ok(typed instanceof TypeError);
    assert.ok(!typed.message.includes('12345678'));
  });

  test('403 beyond the grant', async () => {
    await assert.rejects(rt.secrets.set('X', 'prod-value-1', { vault: 'prod' }), (e) => {
      assert.ok(e instanceof PermissionError);
      assert.equal(e.status, 403);
      assert.match(e.error, /no write grant on vault `prod`/);
      assertNoValue(e, 'prod-value-1');
      return true;
    });
    await assert.rejects(rt.secrets.list({ vault: 'prod' }), PermissionError);
    await assert.rejects(rt.secrets.exists('X', { vault: 'prod' }), PermissionError);
  });

  test('a read-only token reads but cannot write', async () => {
    const ro = new Shroud({ baseUrl: server.url, token: await server.token('ro', ['ci:read']), vault: 'ci' });
    assert.equal((await ro.secrets.get('DATABASE_URL')).version, 2);
    await assert.rejects(ro.secrets.set('DATABASE_URL', 'nope-value'), PermissionError);
    await assert.rejects(ro.secrets.delete('DATABASE_URL'), PermissionError);
  });

  test('401 for an unknown token, 403 for none', async () => {
    const bad = new Shroud({ baseUrl: server.url, token: 'shr_not-a-real-token', vault: 'ci' });
    await assert.rejects(bad.secrets.list(), (e) => {
      assert.ok(e instanceof AuthenticationError);
      assert.equal(e.status, 401);
      assert.ok(!e.message.includes('shr_not-a-real-token'));
      return true;
    });
    await assert.rejects(bad.secrets.exists('DATABASE_URL'), AuthenticationError);
    const none = new Shroud({ baseUrl: server.url, token: '', vault: 'ci' });
    await assert.rejects(none.secrets.list(), PermissionError);
  });

  test('the client never shows its token', () => {
    assert.ok(!inspect(rt, { showHidden: true, depth: 5 }).includes(token));
    assert.ok(!JSON.stringify(rt).includes(token));
  });

  test('rendered: previews by default, values with mode Full, a name filter', async () => {
    const preview = await rt.secrets.rendered({ names: ['DATABASE_URL'] });
    assert.equal(preview.mode, 'PreviewOnly');
    assert.deepEqual(preview.secrets.map((s) => s.name), ['DATABASE_URL']);
    assert.equal(preview.secrets[0].preview, 'pos********');
    assert.equal(preview.secrets[0].value, undefined);
    const full = await rt.secrets.rendered({ mode: 'Full', names: ['DATABASE_URL', 'BULK_A'] });
    assert.equal(full.mode, 'Full');
    assert.deepEqual(
      full.secrets.map((s) => [s.name, s.value, s.version]),
      [
        ['DATABASE_URL', 'postgres://u:pw-two@db/app', 2],
        ['BULK_A', 'bulk-a-value', 1],
      ],
    );
    const all = await rt.secrets.rendered({ environment: 'ci', mode: 'Full' });
    assert.equal(all.vault, 'ci');
    assert.ok(all.secrets.length >= 5);
    await assert.rejects(rt.secrets.rendered({ vault: 'prod' }), PermissionError);
  });
});

describe('vars', () => {
  test('set a var', async () => {
    await rt.vars.set('LOG_LEVEL', 'debug');
    assert.equal(await server.cli('var', 'get', 'LOG_LEVEL', '--vault', 'ci'), 'debug');
    await assert.rejects(rt.vars.set('LOG_LEVEL', 'x', { vault: 'prod' }), PermissionError);
  });
});

describe('references', () => {
  test('set, get, delete', async () => {
    const ref = await rt.references.set('OPENAI_KEY', 'sk-reference-value-123');
    assert.match(ref, /^\$secret:[A-Za-z0-9_-]{43}$/);
    const again = await rt.references.get('OPENAI_KEY', { ttl: 60 });
    assert.match(again, /^\$secret:/);
    assert.notEqual(again, ref);
    assert.equal(await server.cli('secret', 'reveal', 'OPENAI_KEY', '--vault', 'workspace'), 'sk-reference-value-123');
    assert.equal(await rt.references.delete('OPENAI_KEY'), true);
    await assert.rejects(rt.references.get('OPENAI_KEY'), (e) => e instanceof NotFoundError && e.error === 'not_found');
    await assert.rejects(rt.references.delete('OPENAI_KEY'), NotFoundError);
  });

  test('a non-string value is stored as compact JSON', async () => {
    await rt.references.set('JSON_VALUE', { user: 'u', port: 5432 });
    assert.equal(await server.cli('secret', 'reveal', 'JSON_VALUE', '--vault', 'workspace'), '{"user":"u","port":5432}');
  });

  test('user scope needs a token with a user', async () => {
    await assert.rejects(rt.references.set('MINE', 'mine-value', { scope: 'user' }), (e) => {
      assert.ok(e instanceof ValidationError);
      assert.equal(e.error, 'user_required');
      assertNoValue(e, 'mine-value');
      return true;
    });
    const alice = new Shroud({ baseUrl: server.url, token: await server.token('alice', [], { user: 'alice' }) });
    const ref = await alice.references.set('MINE', 'alice-own-value', { scope: 'user' });
    assert.match(ref, /^\$secret:/);
    assert.match(await alice.references.get('MINE', { scope: 'user' }), /^\$secret:/);
    assert.equal(await alice.references.delete('MINE', { scope: 'user' }), true);
  });

  test('workspace beyond the grant: 403', async () => {
    const ro = new Shroud({ baseUrl: server.url, token: await server.token('ro-ws', ['workspace:read']) });
    await assert.rejects(ro.references.set('X', 'x-value'), PermissionError);
  });
});

describe('fetch', () => {
  test('references resolved in the request, values masked in the answer', async () => {
    const value = 'tok-fetch-secret-987654';
    const ref = await rt.references.set('API_TOKEN', value);
    const answer = await rt.fetch(`${echo.url}/v1/items`, {
      method: 'POST',
      headers: { 'x-api-key': ref, 'content-type': 'text/plain' },
      query: { key: ref, plain: 'yes' },
      body: `payload ${ref}`,
      auth: { type: 'bearer', token: ref },
    });
    const seen = echo.received.at(-1);
    assert.equal(seen.method, 'POST');
    assert.equal(seen.headers['x-api-key'], value);
    assert.equal(seen.headers.authorization, `Bearer ${value}`);
    assert.equal(seen.body, `payload ${value}`);
    assert.match(seen.url, /^\/v1\/items\?/);
    assert.ok(seen.url.includes(`key=${value}`));
    assert.equal(answer.status, 200);
    assert.ok(!JSON.stringify(answer).includes(value), 'the answer holds the value');
    assert.equal(answer.headers['x-echo'], '<secret:api_token>');
    const echoed = JSON.parse(answer.body);
    assert.equal(echoed.headers['x-api-key'], '<secret:api_token>');
    assert.equal(echoed.body, 'payload <secret:api_token>');
  });

  test('basic auth, a JSON body', async () => {
    const ref = await rt.references.set('BASIC_PW', 'basic-pw-value');
    const answer = await rt.fetch(`${echo.url}/basic`, {
      method: 'PUT',
      auth: { type: 'basic', username: 'bob', password: ref },
      body: { hello: 'world' },
    });
    const seen = echo.received.at(-1);
    assert.equal(seen.headers.authorization, `Basic ${Buffer.from('bob:basic-pw-value').toString('base64')}`);
    assert.equal(seen.body, '{"hello":"world"}');
    assert.equal(answer.status, 200);
  });

  test('an unknown reference: 400, nothing sent', async () => {
    const before = echo.received.length;
    await assert.rejects(
      rt.fetch(`${echo.url}/x`, { headers: { 'x-api-key': `$secret:${'A'.repeat(43)}` } }),
      ValidationError,
    );
    assert.equal(echo.received.length, before);
  });

  test('a private destination is refused with 403', async () => {
    await assert.rejects(rt.fetch('http://10.255.255.1/'), (e) => e instanceof PermissionError && /refused/.test(e.error));
  });
});

describe('audit', () => {
  test('records of the readable vaults', async () => {
    const records = await rt.audit({ vault: 'ci', limit: 5 });
    assert.ok(records.length > 0 && records.length <= 5);
    assert.ok(records.every((r) => r.vault === 'ci' && typeof r.action === 'string'));
  });
});
