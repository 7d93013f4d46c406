// Starts a real `shroud serve` for the tests and the benchmark: a fresh
// temporary home, 127.0.0.1 and a free port (`--listen 127.0.0.1:0`, the
// bound address read from stderr), tokens made with the CLI.
//
// The binary: $SHROUD_BIN, else ../../target/debug/shroud relative to
// sdk/typescript.

import { spawn, spawnSync, execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function shroudBinary() {
  return process.env.SHROUD_BIN ? resolve(process.env.SHROUD_BIN) : resolve(PACKAGE_ROOT, '../../target/debug/shroud');
}

function checkBinary(bin) {
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(
      `shroud binary not found (or not executable) at ${bin}: build it with \`cargo build\` in the repository root, or set SHROUD_BIN to its path`,
    );
  }
}

/** The environment the server and CLI get: nothing of a user's shroud settings. */
function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  for (const name of ['SHROUD_HOME', 'SHROUD_MASTER_KEY', 'SHROUD_URL', 'SHROUD_TOKEN', 'SHROUD_STORE']) delete env[name];
  return { ...env, ...extra };
}

function run(bin, args, { input, env } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(bin, args, { env: cleanEnv(env), timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`shroud ${args.slice(2).join(' ')} failed: ${stderr.trim() || error.message}`));
      } else resolvePromise(stdout.trim());
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/**
 * Removes a home. Sandboxes and deployments that were not deleted keep
 * their disk (a loop-mounted file system, when shroud runs as root) mounted
 * under the home after the server stops: those are unmounted first.
 */
export function removeHome(home) {
  let mounts = [];
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((line) => (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))))
      .filter((path) => path === home || path.startsWith(`${home}/`))
      .sort()
      .reverse();
  } catch {
    // no /proc: nothing to unmount
  }
  for (const path of mounts) spawnSync('umount', ['-l', path], { stdio: 'ignore' });
  rmSync(home, { recursive: true, force: true, maxRetries: 3 });
}

export class ShroudServer {
  constructor(bin, home, child, url) {
    this.bin = bin;
    this.home = home;
    this.child = child;
    this.url = url;
    this.stderr = '';
  }

  /** `shroud token create NAME --grant ...` → the token. */
  token(name, grants = [], { user } = {}) {
    const args = ['--home', this.home, 'token', 'create', name];
    for (const g of grants) args.push('--grant', g);
    if (user) args.push('--user', user);
    return run(this.bin, args);
  }

  /** `printf %s VALUE | shroud secret set NAME --vault V`. */
  secret(name, value, { vault = 'default' } = {}) {
    return run(this.bin, ['--home', this.home, 'secret', 'set', name, '--vault', vault], { input: value });
  }

  /** Any CLI command on this server's home. */
  cli(...args) {
    return run(this.bin, ['--home', this.home, ...args]);
  }

  /** SIGTERM, wait for the exit (SIGKILL after 10 s), remove the home. */
  async stop() {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    removeHome(this.home);
  }
}

/**
 * Starts `shroud serve` on 127.0.0.1 (a free port) with a temporary home;
 * resolves once it answers HTTP.
 */
export async function startServer({ args = [], env } = {}) {
  const bin = shroudBinary();
  checkBinary(bin);
  const home = mkdtempSync(join(tmpdir(), 'shroud-sdk-'));
  const child = spawn(bin, ['--home', home, 'serve', '--listen', '127.0.0.1:0', ...args], {
    env: cleanEnv(env),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const server = new ShroudServer(bin, home, child, undefined);
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`shroud serve did not report its address within 20 s; stderr:\n${stderr.slice(-2000)}`));
    }, 20_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      stderr = (stderr + chunk).slice(-65536);
      server.stderr = stderr;
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`shroud serve exited (${code ?? signal}) before listening; stderr:\n${stderr.slice(-2000)}`));
    });
  }).catch((e) => {
    child.kill('SIGKILL');
    removeHome(home);
    throw e;
  });
  server.url = url;
  // Ready when it answers HTTP at all (GET /api/health, 404 on servers that
  // do not have it yet).
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const response = await fetch(`${url}/api/health`);
      await response.arrayBuffer();
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        await server.stop();
        throw new Error(`shroud serve at ${url} does not answer: ${e.message}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return server;
}
