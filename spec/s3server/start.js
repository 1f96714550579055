// Starts s3rver (a real S3-compatible server) on 127.0.0.1 for
// spec/rclone_spec.lua.  Usage: node start.js <dir> <bucket> [port]
// Port 0 (the default) lets the kernel pick a free port; the line
// "READY <port>" on stdout says where it listens.  Exits on SIGTERM/SIGINT.
'use strict';
const S3rver = require('s3rver');
const [dir, bucket, port] = process.argv.slice(2);
if (!dir || !bucket) {
  console.error('usage: node start.js <dir> <bucket> [port]');
  process.exit(2);
}
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(port || 0),
  directory: dir,
  silent: true,
  configureBuckets: [{ name: bucket }],
});
server.run().then(
  (addr) => { process.stdout.write(`READY ${addr.port}\n`); },
  (err) => { console.error(`s3rver failed to start: ${err && err.stack || err}`); process.exit(1); },
);
const stop = () => server.close().then(() => process.exit(0), () => process.exit(1));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
