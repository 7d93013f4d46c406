// Background commands (`commands.run(cmd, { background: true })`), against a real `shroud serve`.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { CommandHandle, NotFoundError, Shroud } from '@shroud/sdk';
import { startServer } from '../harness/server.js';

const TICKS = 'while true; do echo tick; sleep 0.2; done';
let server;
let rt;
let sandbox;

before(async () => {
  server = await startServer();
  rt = new Shroud({ baseUrl: server.url, token: await server.token('ci', ['ci:read', 'ci:write']), vault: 'ci' });
  await rt.secrets.set('BG', 'bg-secret-value-0123456789');
  sandbox = await rt.sandboxes.create({ template: 'bash' });
});

after(async () => {
  await sandbox?.close().catch(() => {});
  await server?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value || Date.now() > deadline) return value;
    await sleep(200);
  }
}

describe('background commands', () => {
  test('ticks: followed, listed, killed; wait reports it stopped', async () => {
    const started = Date.now();
    const handle = await sandbox.commands.run(TICKS, { background: true });
    assert.ok(Date.now() - started < 5000, 'answered at once');
    assert.ok(handle instanceof CommandHandle);
    assert.equal(typeof handle.pid, 'number');

    const seen = [];
    for await (const event of handle) {
      assert.equal(event.type, 'stdout');
      seen.push(event.data);
      if (seen.length === 3) break;
    }
    assert.ok(seen.join('').startsWith('tick\ntick\n'));

    const running = (await sandbox.commands.list()).find((p) => p.pid === handle.pid);
    assert.equal(running?.status, 'running');
    assert.equal(running.processId, handle.pid);
    assert.equal(running.endedAt ?? null, null);
    assert.equal((await sandbox.exec('echo beside')).stdout, 'beside\n');

    assert.equal(await handle.kill(), true);
    const result = await handle.wait();
    assert.equal(result.status, 'stopped');
    assert.notEqual(result.exitCode, 0);
    assert.ok(result.stdout.startsWith('tick\n'));
    const stopped = (await sandbox.commands.list()).find((p) => p.pid === handle.pid);
    assert.equal(stopped.status, 'stopped');
    assert.ok(stopped.endedAt);
    assert.equal(await sandbox.commands.kill(999_999), false);
  });

  test('a background server is reached over the loopback by a second exec', async () => {
    await sandbox.files.write('site/hello.txt', 'hello from the background\n');
    const log = [];
    const web = await sandbox.commands.run('python3 -m http.server 8765 --bind 127.0.0.1 --directory site', {
      background: true,
      onStderr: (data) => log.push(data),
    });
    try {
      const fetch = "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8765/hello.txt').read().decode(), end='')\"";
      const answer = await waitFor(async () => {
        const r = await sandbox.exec(fetch, { timeoutMs: 5000 });
        return r.exitCode === 0 ? r : undefined;
      }, 15_000);
      assert.ok(answer, 'the background server never answered on 127.0.0.1:8765');
      assert.equal(answer.stdout, 'hello from the background\n');
      const curl = await sandbox.exec('curl -sf http://127.0.0.1:8765/hello.txt', { timeoutMs: 5000 });
      assert.equal(curl.stdout, 'hello from the background\n');
      assert.ok(await waitFor(() => log.join('').includes('hello.txt')), 'the access log came to onStderr');
      assert.ok((await sandbox.commands.list()).some((p) => p.pid === web.pid && p.status === 'running'));
    } finally {
      await web[Symbol.asyncDispose](); // kills it
    }
    assert.ok(await waitFor(async () => (await sandbox.commands.list()).some((p) => p.pid === web.pid && p.status !== 'running')));
    const after = await sandbox.exec('curl -sf http://127.0.0.1:8765/hello.txt', { timeoutMs: 5000 });
    assert.notEqual(after.exitCode, 0);
  });

  test('envs, secrets (masked) and callbacks; the log read again', async () => {
    const out = [];
    const err = [];
    const handle = await sandbox.commands.run('echo "$GREETING $BG"; echo oops >&2; exit 3', {
      background: true,
      envs: { GREETING: 'hi' },
      secrets: ['BG'],
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
    });
    const result = await handle.wait();
    assert.equal(result.exitCode, 3);
    assert.equal(result.status, 'exited');
    assert.equal(result.stdout, 'hi <secret:bg>\n');
    assert.equal(result.stderr, 'oops\n');
    assert.equal(out.join(''), result.stdout);
    assert.deepEqual(err, ['oops\n']);
    assert.ok(!JSON.stringify(result).includes('bg-secret-value'));
    const info = await handle.info();
    assert.equal(info.status, 'exited');
    assert.equal(info.exitCode, 3);
    const events = [];
    for await (const e of sandbox.commands.connect(handle.pid)) events.push(e);
    assert.deepEqual(
      events.filter((e) => e.type === 'stdout').map((e) => e.data),
      ['hi <secret:bg>\n'],
    );
    assert.equal(events.at(-1).type, 'exit');
  });

  test('background commands end with their sandbox', async () => {
    const sb = await rt.sandboxes.create({ template: 'bash' });
    const handle = await sb.commands.run(TICKS, { background: true });
    for await (const _ of handle) break;
    await sb.delete();
    await assert.rejects(sb.commands.list(), NotFoundError);
    handle.disconnect();
  });
});
