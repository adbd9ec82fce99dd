// Reference server for the tusd-trio S3 benchmark (benchmarks/s3.py): @tus/server + @tus/s3-store.
// Usage:
//   node s3-server.mjs -host 127.0.0.1 -port 0 -s3-bucket B -s3-endpoint http://127.0.0.1:PORT \
//     [-s3-part-size BYTES] [-s3-min-part-size BYTES] [-s3-concurrent-part-uploads N] [-tmp-dir DIR]
// Credentials and region come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION.
// Path-style addressing (forcePathStyle), as tusd-trio uses with -s3-endpoint.
// @tus/s3-store stages every part in a file under os.tmpdir() before uploading it; -tmp-dir
// points TMPDIR there (the harness gives a fresh directory and deletes it afterwards).
// -s3-concurrent-part-uploads is @tus/s3-store's maxConcurrentPartUploads: ONE semaphore for the
// whole store (all uploads together), not per upload as in tusd / tusd-trio.
// Prints "You can now upload files to: http://HOST:PORT/files/" once listening (same line as
// tusd / tusd-trio), and exits on SIGTERM / SIGINT.
import http from 'node:http';

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
const bucket = option('s3-bucket');
const endpoint = option('s3-endpoint');
const partSize = Number(option('s3-part-size', String(8 * 1024 * 1024)));
const minPartSize = Number(option('s3-min-part-size', String(5 * 1024 * 1024)));
const concurrency = Number(option('s3-concurrent-part-uploads', '60'));
const tmpDir = option('tmp-dir');
if (!bucket || !endpoint) {
  process.stderr.write('s3-server.mjs: -s3-bucket and -s3-endpoint are required\n');
  process.exit(2);
}
if (tmpDir) process.env.TMPDIR = tmpDir; // os.tmpdir() reads it on every call

const { Server } = await import('@tus/server');
const { S3Store } = await import('@tus/s3-store');

const datastore = new S3Store({
  partSize,
  minPartSize,
  maxConcurrentPartUploads: concurrency,
  s3ClientConfig: {
    bucket,
    endpoint,
    forcePathStyle: true,
    region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1',
  },
});
const tus = new Server({ path: '/files', datastore });
const server = http.createServer((req, res) => tus.handle(req, res));
server.keepAliveTimeout = 65_000;
server.requestTimeout = 0; // a 1 GiB PATCH into a slow S3 takes longer than Node's 300 s default

server.listen(port, host, () => {
  const addr = server.address();
  process.stdout.write(`Using S3 bucket ${bucket} at ${endpoint}, part size ${partSize}\n`);
  process.stdout.write(`You can now upload files to: http://${host}:${addr.port}/files/\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
