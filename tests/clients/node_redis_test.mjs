// node-redis (npm package `redis`) with its default settings: RESP3, so it
// opens with HELLO 3, then CLIENT SETINFO (whose errors it ignores).
//
// Run through run_with_server.py, which gives the server's port as
// TEST_RESP_PORT. Every effect is read back over a second connection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { load, within } from './client_steps.mjs';

const { createClient, WatchError } = load('redis', 'node-redis');

const url = `redis://127.0.0.1:${process.env.TEST_RESP_PORT}`;

async function connect() {
  const client = createClient({ url });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  try {
    await within(client.connect(), 'connect (HELLO 3 handshake)');
  } catch (e) {
    client.destroy();
    throw new Error(`createClient({url}).connect() failed: ${e.message}; client errors: ${[...new Set(errors.map(String))].join('; ')}`);
  }
  return client;
}

let client, other;

before(async () => {
  client = await connect();
  other = await connect();
});

after(async () => {
  for (const c of [client, other]) {
    if (c?.isOpen) await c.quit().catch(() => c.destroy());
  }
});

test('connects with the default handshake and speaks RESP3', async () => {
  assert.equal(await client.ping(), 'PONG');
  const hello = await within(other.hello(), 'HELLO');
  assert.equal(hello.proto, 3);
});

test('SET and GET', async () => {
  assert.equal(await client.set('node:a', 'v1'), 'OK');
  assert.equal(await client.get('node:a'), 'v1');
  assert.equal(await other.get('node:a'), 'v1');
  assert.equal(await client.get('node:missing'), null);
});

test('multi().incr().incr().exec() returns the results and applies them once', async () => {
  const results = await within(client.multi().incr('node:c').incr('node:c').incrBy('node:c', 5).get('node:c').exec(),
                               'MULTI/EXEC');
  assert.deepEqual(results, [1, 2, 7, '7']);
  assert.equal(await other.get('node:c'), '7');
});

test('a transaction aborted by WATCH applies nothing', async () => {
  await client.set('node:w', '1');
  await client.watch('node:w');
  await other.set('node:w', '100');
  await assert.rejects(within(client.multi().set('node:w', '2').incr('node:w2').exec(), 'EXEC'), WatchError);
  assert.equal(await other.get('node:w'), '100');
  assert.equal(await other.exists('node:w2'), 0);
});

test('a transaction with a command refused at queue time applies nothing', async () => {
  await assert.rejects(
      within(client.multi().set('node:q1', 'x').addCommand(['INCR']).set('node:q2', 'y').exec(), 'EXEC'),
      /EXECABORT|wrong number of arguments/);
  assert.equal(await other.exists(['node:q1', 'node:q2']), 0);
  assert.equal(await client.ping(), 'PONG');
});
