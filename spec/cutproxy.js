// A TCP proxy on 127.0.0.1 that can cut connections, for the fault
// injection tests of spec/delivery_spec.lua (through spec/servers.lua).
//
//   node cutproxy.js <target port> <control file>
//
// Listens on a port the kernel picks and prints "READY <port>"; relays each
// connection to 127.0.0.1:<target port>.  While <control file> exists, every
// open connection is reset (both sides) and new connections are reset as
// they arrive; it prints "CUT <n>" when the n-th cut begins and
// "RESTORED <n>" when the file is gone again.  Exits on SIGTERM/SIGINT.
'use strict';
const net = require('net');
const fs = require('fs');

const [targetArg, control] = process.argv.slice(2);
const target = Number(targetArg);
if (!target || !control) {
  console.error('usage: node cutproxy.js <target port> <control file>');
  process.exit(2);
}

const open = new Set();
let cutting = false;
let cuts = 0;

// a reset, not a polite close: the client sees the connection fail
function kill(sock) {
  if (sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
  else sock.destroy();
}

const server = net.createServer((client) => {
  if (cutting) { kill(client); return; }
  const upstream = net.connect({ host: '127.0.0.1', port: target });
  const pair = { client, upstream };
  open.add(pair);
  const drop = () => {
    open.delete(pair);
    kill(client);
    kill(upstream);
  };
  client.on('error', drop);
  upstream.on('error', drop);
  client.on('close', drop);
  upstream.on('close', drop);
  client.pipe(upstream);
  upstream.pipe(client);
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});

setInterval(() => {
  const now = fs.existsSync(control);
  if (now && !cutting) {
    cutting = true;
    cuts += 1;
    for (const pair of open) { kill(pair.client); kill(pair.upstream); }
    open.clear();
    process.stdout.write(`CUT ${cuts}\n`);
  } else if (!now && cutting) {
    cutting = false;
    process.stdout.write(`RESTORED ${cuts}\n`);
  }
}, 20);

const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
