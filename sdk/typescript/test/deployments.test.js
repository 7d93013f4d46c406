// Deployments, agent runs and runs, against a real `shroud serve` (which
// is its home's supervisor).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { NotFoundError, PermissionError, Shroud } from '@shroud/sdk';
import { startServer } from '../harness/server.js';

const S_VALUE = 'deploy-secret-value-424242';
let server;
let rt;

before(async () => {
  server = await startServer();
  rt = new Shroud({ baseUrl: server.url, token: await server.token('ci', ['ci:read', 'ci:write']), vault: 'ci' });
  await rt.secrets.set('S', S_VALUE);
});

after(async () => {
  for (const slug of ['web', 'my-bot', 'failing-bot']) await rt?.deployments.delete(slug).catch(() => {});
  await server?.stop();
});

async function eventually(check, what, ms = 8000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('service deployment', () => {
  test('create, list, logs, stop, start, restart, delete', async () => {
    const created = await rt.deployments.create({
      templateSlug: 'bash',
      apiSlug: 'web',
      vault: 'ci',
      secrets: ['S'],
      env: { PORT: '8080' },
      command: ['sh', '-c', 'echo "up $S on $PORT"; sleep 60'],
      readyAfter: 0.2,
    });
    assert.deepEqual(created, { slug: 'web' });

    const listed = await rt.deployments.list();
    const web = listed.find((d) => d.slug === 'web');
    assert.ok(web);
    assert.equal(web.mode, 'service');
    assert.equal(web.vault, 'ci');
    assert.equal(web.replicas, 1);
    await eventually(
      async () => (await rt.deployments.list()).find((d) => d.slug === 'web')?.secretVersions?.S === 1,
      'the secret versions it runs on',
    );

    const line = await eventually(async () => {
      const lines = await rt.deployments.logs('web').toArray();
      return lines.find((l) => l.stream === 'stdout');
    }, 'the first output line');
    assert.equal(line.data, 'up <secret:s> on 8080');
    assert.equal(line.instance, '1');

    const tail = await rt.deployments.logs('web', { tail: 1 }).toArray();
    assert.equal(tail.length, 1);

    // follow: the lines so far, then new ones; abort() ends it.
    const follow = rt.deployments.logs('web', { follow: true });
    for await (const l of follow) {
      if (l.stream === 'stdout') {
        follow.abort();
      }
    }

    assert.deepEqual(await rt.deployments.stop('web'), { slug: 'web', done: true });
    await eventually(async () => (await rt.deployments.list()).find((d) => d.slug === 'web')?.state === 'stopped', 'stopped');
    assert.deepEqual(await rt.deployments.start('web'), { slug: 'web', done: true });
    assert.deepEqual(await rt.deployments.restart('web'), { slug: 'web', done: true });
    const logs = await rt.deployments.logs('web').toArray();
    assert.ok(!JSON.stringify(logs).includes(S_VALUE));
    assert.deepEqual(await rt.deployments.delete('web'), { slug: 'web', deleted: true });
    assert.ok(!(await rt.deployments.list()).some((d) => d.slug === 'web'));
  });

  test('unknown deployments: 404; beyond the grant: 403', async () => {
    await assert.rejects(rt.deployments.stop('nope'), NotFoundError);
    await assert.rejects(rt.deployments.delete('nope'), NotFoundError);
    await assert.rejects(async () => {
      for await (const _ of rt.deployments.logs('nope')) assert.fail('a line');
    }, NotFoundError);
    await assert.rejects(
      rt.deployments.create({ templateSlug: 'bash', apiSlug: 'x', vault: 'prod', command: ['true'] }),
      PermissionError,
    );
  });
});

describe('agent runs', () => {
  before(async () => {
    await rt.deployments.create({
      templateSlug: 'bash',
      apiSlug: 'my-bot',
      mode: 'agent',
      secrets: ['S'],
      command: ['sh', '-c', 'cat; echo; echo "$S"'],
    });
    await rt.deployments.create({
      templateSlug: 'bash',
      apiSlug: 'failing-bot',
      mode: 'agent',
      command: 'echo failing >&2; exit 5',
    });
  });

  test('run with wait: the ended run, its log masked', async () => {
    const run = await rt.agents.run('my-bot', { message: 'hello', params: { k: 1 } });
    assert.equal(run.status, 'succeeded');
    assert.equal(run.exitCode, 0);
    assert.equal(run.slug, 'my-bot');
    assert.match(run.runId, /^[0-9a-f-]{36}$/);
    const [input, masked] = run.log.trim().split('\n');
    assert.deepEqual(JSON.parse(input), { message: 'hello', params: { k: 1 }, run_id: run.runId });
    assert.equal(masked, '<secret:s>');
    assert.ok(!run.log.includes(S_VALUE));
    assert.match(run.startedAt, /T/);
    assert.match(run.endedAt, /T/);
  });

  test('run without wait, then runs.log (follow) and runs.get', async () => {
    const { runId } = await rt.agents.run('my-bot', { message: 'second', wait: false });
    assert.match(runId, /^[0-9a-f-]{36}$/);
    const lines = await rt.runs.log(runId, { follow: true }).toArray();
    const exit = lines.at(-1);
    assert.equal(exit.event, 'exit');
    assert.equal(exit.code, 0);
    assert.equal(exit.status, 'succeeded');
    assert.ok(lines.some((l) => l.data === '<secret:s>'));
    const run = await rt.runs.get(runId);
    assert.equal(run.status, 'succeeded');
    assert.ok(run.log.includes('"message":"second"'));
  });

  test('a failing run: status failed and its exit code', async () => {
    const run = await rt.agents.run('failing-bot', { message: 'x' });
    assert.equal(run.status, 'failed');
    assert.equal(run.exitCode, 5);
  });

  test('agents.runs lists them, oldest first', async () => {
    const runs = await rt.agents.runs('my-bot');
    assert.equal(runs.length, 2);
    assert.ok(runs[0].startedAt <= runs[1].startedAt);
    assert.equal(runs[0].log, undefined);
    await assert.rejects(rt.runs.get('00000000-0000-0000-0000-000000000000'), NotFoundError);
    await assert.rejects(rt.agents.run('no-bot', { message: 'x' }), NotFoundError);
  });
});
