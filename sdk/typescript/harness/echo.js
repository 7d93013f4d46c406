// A tiny HTTP server on 127.0.0.1 that answers every request with what it
// received (method, url, headers, body) as JSON, and remembers it: the
// destination of the `rt.fetch` tests (shroud is started with
// `--fetch-allow 127.0.0.1/32` to reach it).

import { createServer } from 'node:http';

export async function startEcho() {
  const received = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const seen = { method: req.method, url: req.url, headers: req.headers, body };
      received.push(seen);
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo': req.headers['x-api-key'] ?? '' });
      res.end(JSON.stringify(seen));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise((r) => server.close(r)),
  };
}
