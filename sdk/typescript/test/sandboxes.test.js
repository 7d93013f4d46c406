// Sandboxes: create, buffered and streamed exec, E2B-style commands.run,
// delete and async dispose, against a real `shroud serve`.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { NotFoundError, PermissionError, Shroud, ValidationError } from '@shroud/sdk';
import { startServer } from '../harness/server.js';

const S_VALUE = 'sk-live-sandbox-secret-0123456789';
let server;
let rt;
let sandbox;

before(async () => {
  server = await startServer();
  rt = new Shroud({ baseUrl: server.url, token: await server.token('ci', ['ci:read', 'ci:write']), vault: 'ci' });
  await rt.secrets.set('S', S_VALUE);
  await rt.secrets.set('API_KEY', 'api-key-value-abcdef');
  sandbox = await rt.sandboxes.create({ template: 'bash' });
});

after(async () => {
  await sandbox?.close().catch(() => {});
  await server?.stop();
});

describe('create', () => {
  test('a sandbox of a template', () => {
    assert.match(sandbox.id, /^[0-9a-f-]{36}$/);
    assert.equal(sandbox.template, 'bash');
    assert.equal(sandbox.vault, 'ci');
    assert.equal(sandbox.network, false);
    assert.equal(typeof sandbox.limits.wallSeconds, 'number');
    assert.ok(Array.isArray(sandbox.isolation));
  });

  test('listed among the token’s sandboxes', async () => {
    const list = await rt.sandboxes.list();
    const mine = list.find((s) => s.id === sandbox.id);
    assert.ok(mine);
    assert.equal(mine.template, 'bash');
    assert.equal(mine.vault, 'ci');
  });

  test('beyond the grant: 403; a missing secret or template: 404 naming it', async () => {
    await assert.rejects(rt.sandboxes.create({ template: 'bash', vault: 'prod' }), PermissionError);
    await assert.rejects(rt.sandboxes.create({ template: 'bash', secrets: ['NO_SUCH_SECRET'] }), (e) => e instanceof NotFoundError && e.error.includes('NO_SUCH_SECRET'));
    await assert.rejects(rt.sandboxes.create({ template: 'no-such-template' }), (e) => e instanceof NotFoundError && e.error.includes('no-such-template'));
  });
});

describe('buffered exec', () => {
  test('echo $S with a granted secret is masked as <secret:name>', async () => {
    const r = await sandbox.exec(['sh', '-c', 'echo $S'], { secrets: ['S'] });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, '<secret:s>\n');
    assert.ok(!JSON.stringify(r).includes(S_VALUE));
    assert.equal(r.stderr, '');
    assert.equal(r.timedOut, false);
    assert.equal(typeof r.durationMs, 'number');
  });

  test('ENV=NAME grants and the object form', async () => {
    const a = await sandbox.exec(['sh', '-c', 'echo "$KEY"'], { secrets: ['KEY=API_KEY'] });
    assert.equal(a.stdout, '<secret:api_key>\n');
    const b = await sandbox.exec(['sh', '-c', 'echo "$TOKEN"'], { secrets: { TOKEN: 'API_KEY' } });
    assert.equal(b.stdout, '<secret:api_key>\n');
  });

  test('a string command runs with sh -c', async () => {
    const r = await sandbox.exec('echo a && echo "$S" >&2', { secrets: ['S'] });
    assert.equal(r.stdout, 'a\n');
    assert.equal(r.stderr, '<secret:s>\n');
  });

  test('exit codes propagate', async () => {
    assert.equal((await sandbox.exec('exit 7')).exitCode, 7);
    assert.equal((await sandbox.exec(['false'])).exitCode, 1);
    assert.equal((await sandbox.exec(['no-such-program-xyz'])).exitCode, 127);
  });

  test('env and stdin', async () => {
    const r = await sandbox.exec('echo "$GREETING"; cat', { env: { GREETING: 'hello' }, stdin: 'from stdin' });
    assert.equal(r.stdout, 'hello\nfrom stdin');
  });

  test('stars mask', async () => {
    const r = await sandbox.exec('echo $S', { secrets: ['S'], mask: 'stars' });
    assert.ok(!r.stdout.includes(S_VALUE));
    assert.match(r.stdout, /\*{3,}/);
  });

  test('a timeout ends the command: 124', async () => {
    const r = await sandbox.exec(['sleep', '10'], { timeoutMs: 300 });
    assert.equal(r.exitCode, 124);
    assert.equal(r.timedOut, true);
  });

  test('files persist between commands of a sandbox', async () => {
    await sandbox.exec(['sh', '-c', 'cat > note.txt'], { stdin: 'kept' });
    assert.equal((await sandbox.exec(['cat', 'note.txt'])).stdout, 'kept');
  });
});

const SCRIPT = 'echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; sleep 0.1; echo "$S"; exit 3';
const EXPECTED = [
  ['stdout', 'one\n'],
  ['stderr', 'two\n'],
  ['stdout', 'three\n'],
  ['stdout', '<secret:s>\n'],
];

describe('streamed exec', () => {
  test('callbacks get the chunks in order, then the exit code', async () => {
    const seen = [];
    const started = Date.now();
    let firstAt;
    const r = await sandbox.exec(SCRIPT, {
      secrets: ['S'],
      onStdout: (data) => {
        firstAt ??= Date.now() - started;
        seen.push(['stdout', data]);
      },
      onStderr: (data) => seen.push(['stderr', data]),
    });
    assert.deepEqual(seen, EXPECTED);
    assert.ok(firstAt < 250, `the first chunk came after ${firstAt} ms: not streamed`);
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdout, 'one\nthree\n<secret:s>\n');
    assert.equal(r.stderr, 'two\n');
    assert.ok(!JSON.stringify(seen).includes(S_VALUE));
  });

  test('for await (const event of sandbox.stream(cmd))', async () => {
    const events = [];
    for await (const event of sandbox.stream(SCRIPT, { secrets: ['S'] })) events.push(event);
    assert.deepEqual(
      events.slice(0, -1).map((e) => [e.type, e.data]),
      EXPECTED,
    );
    const exit = events.at(-1);
    assert.equal(exit.type, 'exit');
    assert.equal(exit.exitCode, 3);
    assert.equal(typeof exit.durationMs, 'number');
    assert.ok(events.every((e) => typeof e.ts === 'string'));
  });

  test('stream().result() collects everything', async () => {
    const r = await sandbox.stream(['sh', '-c', 'echo x; exit 2']).result();
    assert.equal(r.exitCode, 2);
    assert.equal(r.stdout, 'x\n');
  });

  test('leaving the loop early kills the command', async () => {
    const started = Date.now();
    for await (const event of sandbox.stream('echo start; sleep 30; echo never')) {
      assert.deepEqual([event.type, event.data], ['stdout', 'start\n']);
      break;
    }
    assert.ok(Date.now() - started < 5000);
    // The sandbox goes on working.
    assert.equal((await sandbox.exec('echo after')).stdout, 'after\n');
  });

  test('an error of the request is thrown by the iterator', async () => {
    const gone = rt.sandboxes.attach('00000000-0000-0000-0000-000000000000');
    await assert.rejects(async () => {
      for await (const _ of gone.stream('echo x')) assert.fail('an event');
    }, NotFoundError);
  });
});

describe('E2B-style commands.run', () => {
  test('envs, onStdout, onStderr', async () => {
    const out = [];
    const err = [];
    const r = await sandbox.commands.run('echo "$GREETING"; echo oops >&2', {
      envs: { GREETING: 'hi' },
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
    });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'hi\n');
    assert.deepEqual(out, ['hi\n']);
    assert.deepEqual(err, ['oops\n']);
  });

  test('buffered without callbacks', async () => {
    const r = await sandbox.commands.run('echo "$S"; exit 4', { secrets: ['S'] });
    assert.equal(r.exitCode, 4);
    assert.equal(r.stdout, '<secret:s>\n');
  });
});

describe('delete', () => {
  test('delete, then the sandbox is gone', async () => {
    const sb = await rt.sandboxes.create({ template: 'bash', secrets: ['S'], env: { MODE: 'test' } });
    assert.equal((await sb.exec('echo "$MODE $S"')).stdout, 'test <secret:s>\n');
    assert.equal(await sb.delete(), true);
    await assert.rejects(sb.exec('true'), NotFoundError);
    await assert.rejects(sb.delete(), NotFoundError);
    await sb.close(); // already gone: fine
    assert.ok(!(await rt.sandboxes.list()).some((s) => s.id === sb.id));
  });

  test('Symbol.asyncDispose deletes it (await using)', async () => {
    const sb = await rt.sandboxes.create({ template: 'bash' });
    await sb[Symbol.asyncDispose]();
    assert.ok(!(await rt.sandboxes.list()).some((s) => s.id === sb.id));
  });

  test('another token cannot see it', async () => {
    const other = new Shroud({ baseUrl: server.url, token: await server.token('other', ['ci:read']), vault: 'ci' });
    await assert.rejects(other.sandboxes.attach(sandbox.id).exec('true'), NotFoundError);
  });
});
