// ioredis with its default settings: it opens with HELLO 3 (falling back to
// RESP2 on NOPROTO), CLIENT SETINFO (errors ignored), then INFO as its ready
// check.
//
// Run through run_with_server.py, which gives the server's port as
// TEST_RESP_PORT. Every effect is read back over a second connection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { load, within } from './client_steps.mjs';

const Redis = load('ioredis', 'ioredis');

const port = Number(process.env.TEST_RESP_PORT);

async function connect() {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true });  // lazy only to await the handshake here
  const errors = [];
  client.on('error', (e) => errors.push(String(e)));
  try {
    await within(client.connect(), 'connect (handshake and ready check)');
  } catch (e) {
    client.disconnect();
    throw new Error(`new Redis(port, host).connect() failed: ${e.message}; client errors: ${[...new Set(errors)].join('; ')}`);
  }
  return client;
}

let client, other;

before(async () => {
  client = await connect();
  other = await connect();
});

after(async () => {
  for (const c of [client, other]) c?.disconnect();
});

test('SET and GET after the default handshake', async () => {
  assert.equal(await client.ping(), 'PONG');
  assert.equal(await client.set('io:a', 'v1'), 'OK');
  assert.equal(await other.get('io:a'), 'v1');
});

test('pipeline() sends a batch and gets each reply in order', async () => {
  const results = await within(client.pipeline().set('io:p', '5').incr('io:p').get('io:p').incrby('io:p', 10).exec(),
                               'pipeline');
  assert.deepEqual(results, [[null, 'OK'], [null, 6], [null, '6'], [null, 16]]);
  assert.equal(await other.get('io:p'), '16');
});

test('multi().incr().incr().exec() returns the results and applies them once', async () => {
  const results = await within(client.multi().incr('io:c').incr('io:c').incrby('io:c', 5).get('io:c').exec(),
                               'MULTI/EXEC');
  assert.deepEqual(results, [[null, 1], [null, 2], [null, 7], [null, '7']]);
  assert.equal(await other.get('io:c'), '7');
});

test('a transaction aborted by WATCH returns null and applies nothing', async () => {
  await client.set('io:w', '1');
  await client.watch('io:w');
  await other.set('io:w', '100');
  assert.equal(await within(client.multi().set('io:w', '2').incr('io:w2').exec(), 'EXEC'), null);
  assert.equal(await other.get('io:w'), '100');
  assert.equal(await other.exists('io:w2'), 0);
});

test('a transaction with a command refused at queue time applies nothing', async () => {
  await assert.rejects(
      within(client.multi().set('io:q1', 'x').call('INCR').set('io:q2', 'y').exec(), 'EXEC'),
      /EXECABORT/);
  assert.equal(await other.exists('io:q1', 'io:q2'), 0);
  assert.equal(await client.ping(), 'PONG');
});
