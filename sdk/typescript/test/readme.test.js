// Runs every ```js block of README.md, in order, against a real server
// (as `node --input-type=module -e`, from the package root so that
// `import ... from '@shroud/sdk'` resolves to this package), with
// SHROUD_URL and SHROUD_TOKEN set; each `// prints: TEXT` comment must be
// in the block's output.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer } from '../harness/server.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const README = readFileSync(resolve(ROOT, 'README.md'), 'utf8');
const BLOCKS = [...README.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);

let server;
let env;

before(async () => {
  server = await startServer();
  const token = await server.token('readme', ['default:read', 'default:write']);
  env = { ...process.env, SHROUD_URL: server.url, SHROUD_TOKEN: token };
});

after(async () => {
  await server?.stop();
});

function heading(code, index) {
  const at = README.indexOf(code);
  const before = README.slice(0, at);
  const title = [...before.matchAll(/^## (.+)$/gm)].at(-1)?.[1] ?? 'README';
  return `${index + 1}: ${title}`;
}

describe('README examples', () => {
  test('there are examples to run', () => {
    assert.ok(BLOCKS.length >= 5, `found ${BLOCKS.length} js blocks`);
  });

  BLOCKS.forEach((code, index) => {
    test(heading(code, index), async () => {
      const { stdout, stderr, code: exit } = await new Promise((r) => {
        execFile(
          process.execPath,
          ['--input-type=module', '-e', code],
          { cwd: ROOT, env, timeout: 30_000 },
          (error, stdout, stderr) => r({ stdout, stderr, code: error ? (error.code ?? 1) : 0 }),
        );
      });
      assert.equal(exit, 0, `the example failed:\n${stderr}\n${stdout}`);
      const expected = [...code.matchAll(/\/\/ prints: (.+)$/gm)].map((m) => m[1].trim());
      for (const text of expected) assert.ok(stdout.includes(text), `expected in the output: ${text}\n--- output:\n${stdout}`);
    });
  });
});
