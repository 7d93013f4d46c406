// Typed usage of the SDK: `npm run typecheck` compiles it (never run).
import Shroud, {
  type ExecEvent,
  type ExecResult,
  NotFoundError,
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
