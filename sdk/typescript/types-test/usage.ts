// Typed usage of the SDK: `npm run typecheck` compiles it (never run).
import Shroud, {
  type BackgroundResult,
  CommandHandle,
  type ExecEvent,
  type ExecResult,
  type FileEntry,
  NotFoundError,
  PayloadTooLargeError,
  type ProcessInfo,
  type SandboxInfo,
  ValidationError,
  SecretsNotSetError,
  ShroudError,
  type Run,
} from '@shroud/sdk';

export async function usage(): Promise<void> {
  const rt = new Shroud({ baseUrl: 'http://127.0.0.1:7878', token: 'shr_x', vault: 'ci' });

  const version: number = await rt.secrets.set('DATABASE_URL', 'postgres://…', { purpose: 'UsernamePassword' });
  const { setSecrets, versions } = await rt.secrets.setMany({ A: 'a', B: 'b' });
  setSecrets.map((s: string) => versions[s]);
  await rt.secrets.setMany([{ name: 'C', value: 'c', description: 'd', purpose: 'APIKey' }], { vault: 'prod' });
  const meta = await rt.secrets.get('DATABASE_URL');
  const exists: boolean = await rt.secrets.exists(meta.name);
  (await rt.secrets.list()).forEach((s) => s.version + version + Number(exists));
  const rendered = await rt.secrets.rendered({ mode: 'Full', names: ['A'], environment: 'ci' });
  rendered.secrets[0]?.value?.toUpperCase();
  await rt.secrets.delete('A');
  await rt.vars.set('LOG_LEVEL', 'debug');

  const ref: string = await rt.references.set('K', { any: 'json' }, { scope: 'workspace', ttl: 60 });
  await rt.references.get('K', { scope: 'user' });
  await rt.references.delete('K');
  const answer = await rt.fetch('https://api.example.com', {
    method: 'POST',
    headers: { 'x-api-key': ref },
    auth: { type: 'awsv4', accessKeyId: 'AK', secretAccessKey: ref, region: 'us-east-1', service: 's3' },
  });
  answer.status.toFixed();

  {
    await using sandbox = await rt.sandboxes.create({ template: 'bash', secrets: { TOKEN: 'K' }, env: { A: 'b' } });
    const r: ExecResult = await sandbox.exec('node app.js', { secrets: ['DATABASE_URL'], cwd: 'sub', timeoutMs: 1000 });
    r.exitCode?.toFixed();
    await sandbox.exec(['ls'], { onStdout: (d: string) => void d, onStderr: async (d) => void d.length });
    for await (const event of sandbox.stream('echo hi')) {
      const e: ExecEvent = event;
      if (e.type === 'exit') e.exitCode;
      else e.data.trim();
    }
    const run = await sandbox.commands.run('echo $X', { envs: { X: '1' }, onStdout: console.log });
    run.stdout.trim();
    await sandbox.stream(['true']).result();
  }
  {
    const sandbox = await rt.sandboxes.create({ template: 'bash', timeoutS: 600 });
    await rt.sandboxes.create({ template: 'bash', timeout: 60 });
    const entry: FileEntry = await sandbox.files.write('a/b.txt', 'text');
    entry.size?.toFixed();
    await sandbox.files.write('b.bin', new Uint8Array([1, 2]));
    await sandbox.files.write('c.bin', new Blob(['x']));
    await sandbox.files.write('d.bin', new ReadableStream<Uint8Array>());
    await sandbox.files.write('e.bin', (async function* () {
      yield new Uint8Array(1);
      yield 'text';
    })());
    const bytes: Uint8Array = await sandbox.files.read('a/b.txt');
    const text: string = await sandbox.files.readText('a/b.txt', { signal: AbortSignal.timeout(1000) });
    const stream: ReadableStream<Uint8Array> = await sandbox.files.stream('b.bin');
    await stream.cancel();
    (await sandbox.files.list()).map((e) => e.name + e.type + e.path + bytes.length + text);
    await sandbox.files.list('a');
    const removed: true = await sandbox.files.remove('a');
    const there: boolean = await sandbox.files.exists('a/b.txt');
    void removed, there;

    const info: SandboxInfo = await sandbox.info();
    info.expiresAt?.toUpperCase();
    (await sandbox.setTimeout(3600)).timeoutS?.toFixed();
    (await sandbox.getInfo()).node.trim();
    const alive: boolean = await sandbox.isRunning();
    void alive, sandbox.timeoutS, sandbox.expiresAt;
    (await rt.sandboxes.get(sandbox.id)).timeoutS;

    const handle: CommandHandle = await sandbox.commands.run('python3 -m http.server', {
      background: true,
      envs: { A: '1' },
      onStdout: (d) => void d,
    });
    handle.pid.toFixed();
    for await (const event of handle) {
      if (event.type === 'exit') event.exitCode;
      else event.data.trim();
    }
    const killed: boolean = await handle.kill();
    const done: BackgroundResult = await handle.wait();
    done.status === 'stopped' && killed;
    (await handle.info()).status;
    handle.disconnect();
    const list: ProcessInfo[] = await sandbox.commands.list();
    list.map((p) => p.pid + p.processId + p.status + p.command.join(' '));
    await sandbox.commands.kill(handle.pid);
    sandbox.commands.connect(1, { onStderr: (d) => void d });
    const fg: ExecResult = await sandbox.commands.run('echo hi');
    fg.stdout.trim();
    {
      await using bg = await sandbox.commands.run(['sleep', '60'], { background: true });
      bg.pid;
    }
    try {
      await sandbox.files.write('big', 'x');
    } catch (e) {
      if (e instanceof PayloadTooLargeError) e satisfies ValidationError;
    }
    await sandbox.delete();
  }
  await rt.sandboxes.attach('id').close();
  (await rt.sandboxes.list()).map((s) => s.id);

  const { slug } = await rt.deployments.create({
    templateSlug: 'nodejs-20',
    apiSlug: 'my-bot',
    mode: 'agent',
    command: ['node', 'bot.js'],
    secrets: ['OPENAI_API_KEY'],
    readyAfter: 1,
  });
  (await rt.deployments.list()).map((d) => d.state);
  for await (const line of rt.deployments.logs(slug, { follow: true, tail: 10 })) line.data;
  await rt.deployments.stop(slug);
  await rt.deployments.start(slug);
  await rt.deployments.restart(slug);
  await rt.deployments.delete(slug);

  const done: Run = await rt.agents.run('my-bot', { message: 'hi', params: { k: 1 } });
  const started: { runId: string } = await rt.agents.run('my-bot', { message: 'hi', wait: false });
  (await rt.runs.get(started.runId)).status satisfies Run['status'];
  await rt.runs.log(done.runId, { follow: true }).toArray();
  await rt.agents.runs('my-bot');
  (await rt.health()).store.reachable;

  try {
    await rt.secrets.setMany({ A: '' });
  } catch (e) {
    if (e instanceof SecretsNotSetError) e.setSecrets.concat(Object.keys(e.versions));
    else if (e instanceof NotFoundError) e.status.toFixed();
    else if (e instanceof ShroudError) e.errors.map((x) => x.name + x.error);
  }
}
