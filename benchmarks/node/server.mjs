// Reference server for the tusd-trio benchmarks: @tus/server + @tus/file-store.
// Usage: node server.mjs -host 127.0.0.1 -port 0 -upload-dir DIR
// Prints "You can now upload files to: http://HOST:PORT/files/" once listening (same line as
// tusd / tusd-trio), and exits on SIGTERM / SIGINT.
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

function option(name, fallback) {
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i].replace(/^--?/, '');
    if (a === name) return args[i + 1];
    if (a.startsWith(name + '=')) return a.slice(name.length + 1);
  }
  return fallback;
}

const host = option('host', '127.0.0.1');
const port = Number(option('port', '0'));
const directory = option('upload-dir', './data');

const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.keepAliveTimeout = 65_000;

server.listen(port, host, () => {
  const addr = server.address();
  process.stdout.write(`You can now upload files to: http://${host}:${addr.port}/files/\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
