// Sandbox files (raw bytes, streamed) and lifetime, against a real `shroud serve`.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { NotFoundError, PayloadTooLargeError, Shroud, ValidationError } from '@shroud/sdk';
import { startServer } from '../harness/server.js';

const S_VALUE = 'sk-live-file-secret-0123456789';
const BINARY = new Uint8Array([...Array(256).keys(), 0, 255, 254, 13, 10, 128]);
let server;
let rt;
let sandbox;
let scratch;

before(async () => {
  server = await startServer();
  rt = new Shroud({ baseUrl: server.url, token: await server.token('ci', ['ci:read', 'ci:write']), vault: 'ci' });
  await rt.secrets.set('S', S_VALUE);
  await rt.secrets.set('ONCE', 'granted-to-one-exec-only');
  sandbox = await rt.sandboxes.create({ template: 'bash', secrets: ['S'] });
  scratch = mkdtempSync(join(tmpdir(), 'shroud-sdk-files-'));
  // A template whose sandboxes have a 2 MiB disk, in the server's home.
  mkdirSync(join(server.home, 'sandbox-templates'), { recursive: true });
  writeFileSync(
    join(server.home, 'sandbox-templates', 'tiny-disk.toml'),
    'description = "a 2 MiB disk"\n[runtime]\ninterpreter = "bash"\n[limits]\ndisk_mb = 2\n[network]\nenabled = false\n',
  );
});

after(async () => {
  await sandbox?.close().catch(() => {});
  await server?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

async function* chunksOf(bytes, size) {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

describe('files', () => {
  test('write + read round trip: binary bytes, a nested path', async () => {
    const entry = await sandbox.files.write('deep/er/data.bin', BINARY);
    assert.deepEqual(entry, { name: 'data.bin', type: 'file', size: BINARY.length, path: 'deep/er/data.bin' });
    const back = await sandbox.files.read('deep/er/data.bin');
    assert.ok(back instanceof Uint8Array);
    assert.deepEqual([...back], [...BINARY]);
    assert.equal((await sandbox.exec('wc -c < deep/er/data.bin')).stdout.trim(), String(BINARY.length));
    await sandbox.files.write('deep/text.txt', 'héllo\n');
    assert.equal(await sandbox.files.readText('deep/text.txt'), 'héllo\n');
    await sandbox.files.write('buf.bin', Buffer.from([1, 2, 3]));
    await sandbox.files.write('ab.bin', new Uint8Array([4, 5]).buffer);
    await sandbox.files.write('blob.bin', new Blob([new Uint8Array([6])]));
    assert.deepEqual([...(await sandbox.files.read('buf.bin')), ...(await sandbox.files.read('ab.bin')), ...(await sandbox.files.read('blob.bin'))], [1, 2, 3, 4, 5, 6]);
    await sandbox.files.write('deep/text.txt', '');
    assert.equal((await sandbox.files.read('deep/text.txt')).length, 0);
  });

  test('list', async () => {
    await sandbox.files.write('listed/top.txt', '12345');
    await sandbox.files.write('listed/dir/inner.txt', 'x');
    await sandbox.exec('ln -s top.txt listed/link');
    const entries = Object.fromEntries((await sandbox.files.list('listed')).map((e) => [e.name, e]));
    assert.deepEqual(Object.keys(entries).sort(), ['dir', 'link', 'top.txt']);
    assert.deepEqual(entries['top.txt'], { name: 'top.txt', type: 'file', size: 5, path: 'listed/top.txt' });
    assert.equal(entries.dir.type, 'directory');
    assert.equal(entries.link.type, 'symlink');
    assert.ok((await sandbox.files.list()).some((e) => e.name === 'listed' && e.path === 'listed'));
    assert.deepEqual(
      (await sandbox.files.list('listed/dir')).map((e) => e.path),
      ['listed/dir/inner.txt'],
    );
    await assert.rejects(sandbox.files.list('no-such-dir'), NotFoundError);
    assert.equal(await sandbox.files.exists('listed/dir/inner.txt'), true);
    assert.equal(await sandbox.files.exists('listed/nope'), false);
  });

  test('remove: a file, a directory recursively; then 404', async () => {
    await sandbox.files.write('gone.txt', 'x');
    await sandbox.files.write('tree/a/b.txt', 'y');
    assert.equal(await sandbox.files.remove('gone.txt'), true);
    assert.equal(await sandbox.files.remove('tree'), true);
    const names = (await sandbox.files.list()).map((e) => e.name);
    assert.ok(!names.includes('gone.txt') && !names.includes('tree'));
    await assert.rejects(sandbox.files.remove('gone.txt'), NotFoundError);
    await assert.rejects(sandbox.files.read('gone.txt'), NotFoundError);
  });

  for (const path of ['../x', '/etc/passwd', 'a/../../x']) {
    test(`a path that escapes is refused: ${path}`, async () => {
      const refused = (e) => e instanceof ValidationError && e.status === 400;
      await assert.rejects(sandbox.files.read(path), refused);
      await assert.rejects(sandbox.files.write(path, 'x'), refused);
      await assert.rejects(sandbox.files.remove(path), refused);
      await assert.rejects(sandbox.files.list(path), refused);
    });
  }

  test('a link that leads out is refused; a directory cannot be read', async () => {
    await sandbox.exec('ln -s /etc etc-link');
    await assert.rejects(sandbox.files.read('etc-link/passwd'), ValidationError);
    await assert.rejects(sandbox.files.write('etc-link/evil', 'x'), ValidationError);
    await sandbox.files.write('d/f', 'x');
    await assert.rejects(sandbox.files.read('d'), ValidationError);
  });

  test("a file holding a granted secret's value reads back masked", async () => {
    await sandbox.exec('echo "key=$S" > env.txt');
    assert.equal(await sandbox.files.readText('env.txt'), 'key=<secret:s>\n');
    await sandbox.files.write('copy.txt', `a ${S_VALUE} b`);
    assert.equal(await sandbox.files.readText('copy.txt'), 'a <secret:s> b');
    // Granted to one exec only: still masked later.
    await sandbox.exec('echo "$ONCE" > once.txt', { secrets: ['ONCE'] });
    assert.equal(await sandbox.files.readText('once.txt'), '<secret:once>\n');
    let streamed = '';
    for await (const chunk of await sandbox.files.stream('copy.txt')) streamed += Buffer.from(chunk).toString();
    assert.ok(!streamed.includes(S_VALUE));
  });

  test('8 MiB streamed upload and download (sha256)', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const digest = sha256(data);
    // An async iterable: streamed, chunked.
    assert.equal((await sandbox.files.write('big/iter.bin', chunksOf(data, 100_000))).size, data.length);
    // A Node read stream of a file on disk.
    const local = join(scratch, 'src.bin');
    writeFileSync(local, data);
    assert.equal((await sandbox.files.write('big/file.bin', createReadStream(local))).size, data.length);
    // A web ReadableStream.
    const web = Readable.toWeb(Readable.from(chunksOf(data, 1 << 20)));
    assert.equal((await sandbox.files.write('big/web.bin', web)).size, data.length);
    // Downloads, streamed into a file and hashed chunk by chunk.
    const back = join(scratch, 'back.bin');
    await pipeline(Readable.fromWeb(await sandbox.files.stream('big/file.bin')), createWriteStream(back));
    assert.equal(sha256(readFileSync(back)), digest);
    const hash = createHash('sha256');
    for await (const chunk of await sandbox.files.stream('big/iter.bin')) hash.update(chunk);
    assert.equal(hash.digest('hex'), digest);
    assert.equal(sha256(await sandbox.files.read('big/web.bin')), digest);
    assert.equal((await sandbox.exec("sha256sum big/iter.bin | cut -d' ' -f1")).stdout.trim(), digest);
  });

  test('a streamed upload is not gathered in memory', async () => {
    const size = 160 * 1024 * 1024;
    async function* fresh() {
      for (let sent = 0; sent < size; sent += 256 * 1024) yield new Uint8Array(256 * 1024);
    }
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    const base = process.memoryUsage().rss;
    try {
      assert.equal((await sandbox.files.write('big/fresh.bin', fresh())).size, size);
    } finally {
      clearInterval(timer);
    }
    const grew = (peak - base) / 1048576;
    assert.ok(grew < 96, `the process grew by ${grew.toFixed(0)} MiB while streaming 160 MiB`);
    await sandbox.files.remove('big/fresh.bin');
  });

  test('a source that fails: its own error, nothing written; an abort', async () => {
    async function* failing() {
      yield new Uint8Array(1024);
      throw new RangeError('the source broke');
    }
    await assert.rejects(sandbox.files.write('broken.bin', failing()), (e) => e instanceof RangeError && e.message === 'the source broke');
    await assert.rejects(sandbox.files.write('broken.bin', [new Uint8Array(1), 42]), TypeError);
    const controller = new AbortController();
    async function* slow() {
      yield new Uint8Array(1024);
      controller.abort();
      await new Promise((r) => setTimeout(r, 200));
      yield new Uint8Array(1024);
    }
    await assert.rejects(sandbox.files.write('aborted.bin', slow(), { signal: controller.signal }), (e) => e.name === 'AbortError');
    const names = (await sandbox.files.list()).map((e) => e.name);
    assert.ok(!names.includes('broken.bin') && !names.includes('aborted.bin'));
    assert.equal((await sandbox.exec('echo still fine')).stdout, 'still fine\n');
  });

  test('a full disk is a PayloadTooLargeError (413)', async () => {
    const tiny = await rt.sandboxes.create({ template: 'tiny-disk' });
    try {
      const big = new Uint8Array(4 << 20);
      const tooLarge = (e) => e instanceof PayloadTooLargeError && e instanceof ValidationError && e.status === 413;
      await assert.rejects(tiny.files.write('big.bin', chunksOf(big, 256 * 1024)), tooLarge);
      await assert.rejects(tiny.files.write('big.bin', big), tooLarge);
      assert.ok(!(await tiny.files.list()).some((e) => e.name === 'big.bin'));
      assert.equal((await tiny.files.write('small.txt', 'ok')).size, 2);
    } finally {
      await tiny.close();
    }
  });

  test('the wrong kind of data is a TypeError', async () => {
    await assert.rejects(sandbox.files.write('x', 42), TypeError);
    await assert.rejects(sandbox.files.write('x', { a: 1 }), TypeError);
  });

  test('files of a missing sandbox: 404', async () => {
    const gone = rt.sandboxes.attach('00000000-0000-0000-0000-000000000000');
    await assert.rejects(gone.files.write('x', 'x'), NotFoundError);
    await assert.rejects(gone.files.read('x'), NotFoundError);
    await assert.rejects(gone.info(), NotFoundError);
    assert.equal(await gone.isRunning(), false);
  });
});

describe('lifetime', () => {
  test('info() and setTimeout() change expiresAt', async () => {
    const info = await sandbox.info();
    assert.equal(info.id, sandbox.id);
    assert.equal(info.template, 'bash');
    assert.equal(info.vault, 'ci');
    assert.equal(info.timeoutS, 3600);
    assert.equal(typeof info.node, 'string');
    const before = Date.parse(info.expiresAt);
    assert.ok(before > Date.now());
    const changed = await sandbox.setTimeout(7200);
    assert.equal(changed.timeoutS, 7200);
    assert.ok(Date.parse(changed.expiresAt) - before > 50 * 60 * 1000);
    assert.equal(sandbox.timeoutS, 7200);
    assert.equal(sandbox.expiresAt, changed.expiresAt);
    assert.equal((await sandbox.info()).expiresAt, changed.expiresAt); // info() does not renew it
    assert.equal((await rt.sandboxes.get(sandbox.id)).timeoutS, 7200);
    assert.equal((await sandbox.getInfo()).id, sandbox.id);
    await assert.rejects(sandbox.setTimeout(0), ValidationError);
    await assert.rejects(sandbox.setTimeout(1e9), ValidationError);
  });

  test('create({ timeoutS }) / create({ timeout }); an exec renews it', async () => {
    const sb = await rt.sandboxes.create({ template: 'bash', timeoutS: 60 });
    try {
      assert.equal(sb.timeoutS, 60);
      const first = Date.parse((await sb.info()).expiresAt);
      await new Promise((r) => setTimeout(r, 1100));
      await sb.exec('true');
      assert.ok(Date.parse((await sb.info()).expiresAt) > first);
    } finally {
      await sb.close();
    }
    const other = await rt.sandboxes.create({ template: 'bash', timeout: 90 });
    assert.equal((await other.info()).timeoutS, 90);
    await other.close();
  });

  test('a sandbox created with timeout 2 disappears once idle', async () => {
    const sb = await rt.sandboxes.create({ template: 'bash', timeoutS: 2 });
    assert.equal((await sb.info()).timeoutS, 2);
    const deadline = Date.now() + 12_000;
    let gone = false;
    while (Date.now() < deadline) {
      try {
        await sb.info();
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
        gone = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    if (!gone) await sb.close();
    assert.ok(gone, 'still there 12 s after its 2 s timeout');
    assert.equal(await sb.isRunning(), false);
    assert.ok(!(await rt.sandboxes.list()).some((s) => s.id === sb.id));
    await sb.close(); // already gone: fine
  });
});
