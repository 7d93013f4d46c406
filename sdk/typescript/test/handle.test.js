// The background-command handle's own mechanics, with a fake fetch that
// plays the /processes routes (the shapes of the issue-15 contract). The
// real server is exercised by background.test.js; this checks the client
// side only: one followed log shared by iterators and wait(), callbacks
// that never leak a rejection, kill and list.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Shroud } from '@shroud/sdk';

function fakeServer() {
  const state = { killed: false, follows: 0, bodies: [] };
  const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const fetch = async (url, init) => {
    const u = new URL(String(url));
    if (init.method === 'POST') {
      state.bodies.push(JSON.parse(init.body));
      return json(200, { process_id: 7 });
    }
    if (init.method === 'DELETE') {
      if (!u.pathname.endsWith('/processes/7')) return json(404, { error: 'no such process', errors: [] });
      state.killed = true;
      return json(200, { process_id: 7, stopped: true });
    }
    if (u.pathname.endsWith('/processes')) {
      return json(200, {
        processes: [{ process_id: 7, command: ['sh', '-c', 'x'], status: state.killed ? 'stopped' : 'running', exit_code: null, started_at: 't', ended_at: null }],
      });
    }
    assert.ok(u.pathname.endsWith('/processes/7/log'));
    assert.equal(u.searchParams.get('follow'), 'true');
    state.follows += 1;
    const encoder = new TextEncoder();
    let i = 0;
    const body = new ReadableStream({
      async pull(controller) {
        await new Promise((r) => setTimeout(r, 10));
        if (state.killed || i > 500) {
          controller.enqueue(encoder.encode(`${JSON.stringify({ ts: 't', event: 'exit', exit_code: 143, signal: 15 })}\n`));
          controller.close();
          return;
        }
        const stream = i % 2 === 0 ? 'stdout' : 'stderr';
        // As the server writes a background log: one line per event, its newline dropped.
        controller.enqueue(encoder.encode(`${JSON.stringify({ ts: 't', instance: '7', stream, data: `line ${i}` })}\n`));
        i += 1;
      },
    });
    init.signal?.addEventListener('abort', () => body.cancel().catch(() => {}));
    return new Response(body, { status: 200, headers: { 'content-type': 'application/x-ndjson' } });
  };
  return { state, fetch };
}

test('a handle: callbacks at once, iterations from the start, kill, wait, list', async () => {
  const { state, fetch } = fakeServer();
  const rt = new Shroud({ baseUrl: 'http://shroud.test', token: 't', fetch });
  const sandbox = rt.sandboxes.attach('sb1');
  const out = [];
  const handle = await sandbox.commands.run('x', { background: true, envs: { A: '1' }, timeoutMs: 30_000, onStdout: (d) => out.push(d) });
  assert.equal(handle.pid, 7);
  assert.deepEqual(state.bodies, [{ command: ['sh', '-c', 'x'], env: { A: '1' }, timeout_ms: 30_000, background: true }]);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(out.length >= 2, 'the callback ran without wait() or an iteration');

  const first = [];
  for await (const event of handle) {
    first.push([event.type, event.data]);
    if (first.length === 3) break;
  }
  assert.deepEqual(first, [['stdout', 'line 0\n'], ['stderr', 'line 1\n'], ['stdout', 'line 2\n']]);
  // A second iteration starts from the start too.
  for await (const event of handle) {
    assert.deepEqual([event.type, event.data], ['stdout', 'line 0\n']);
    break;
  }
  assert.equal((await sandbox.commands.list())[0].status, 'running');
  assert.equal(await handle.kill(), true);
  const result = await handle.wait();
  assert.equal(result.exitCode, 143);
  assert.equal(result.signal, 15);
  assert.equal(result.status, 'stopped'); // not on the exit line: asked of the list
  assert.ok(result.stdout.startsWith('line 0\nline 2\n'));
  assert.equal(out.join(''), result.stdout);
  assert.equal(state.follows, 1);
  assert.equal(await sandbox.commands.kill(8), false);
});

test('a log that breaks off: wait() rejects, no unhandled rejection', async () => {
  const fetch = async (url, init) => {
    if (init.method === 'POST') return new Response('{"process_id":3}', { status: 200 });
    return new Response('{"error":"sandbox gone","errors":[]}', { status: 404 });
  };
  const rt = new Shroud({ baseUrl: 'http://shroud.test', token: 't', fetch });
  const handle = await rt.sandboxes.attach('sb').commands.run('x', { background: true, onStdout: () => {} });
  await assert.rejects(handle.wait(), (e) => e.status === 404);
  await assert.rejects(async () => {
    for await (const _ of handle) assert.fail('an event');
  }, (e) => e.status === 404);
});
