// Address settings that list several replicas (src/targets.js): a list with a replica down reaches
// the one that is up, with a Python worker and with a Node worker; a list that cannot be used
// throws a TypeError saying what is wrong, when the Client is made.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { Client } from '../src/index.js';
import { ADDRESS, PYTHON_QUEUE, SKIP, only, withWorker } from './_support.js';

describe('an address list that cannot be used', () => {
  const cases = {
    '127.0.0.1:7001,': 'an empty entry',
    '127.0.0.1:7001,,127.0.0.1:7002': 'an empty entry',
    '127.0.0.1:7001,nonsense': '"nonsense" is not HOST:PORT',
    '127.0.0.1:7001,127.0.0.1:99999': '"127.0.0.1:99999" is not HOST:PORT',
    'unix:/run/a.sock,127.0.0.1:7002': 'unix sockets and TCP addresses cannot be mixed',
    'dns:///svc:50051,127.0.0.1:7002': 'for a resolver target (dns:///...) give it alone',
    'unix:/run/a.sock,unix:': '"unix:" names no socket path',
  };
  for (const [address, why] of Object.entries(cases)) {
    test(JSON.stringify(address), () => {
      assert.throws(
        () => new Client(address, only(address)),
        (err) => err instanceof TypeError && err.message.includes('invalid address list') && err.message.includes(why),
      );
    });
  }

  test('as a service address, the registry one too', () => {
    assert.throws(() => new Client('127.0.0.1:7001', only('127.0.0.1:7001', { registryAddress: '127.0.0.1:7001,' })), TypeError);
  });
});

/** An address of the kind of `address` (unix socket or TCP) where nothing listens. */
async function downLike(address, folder) {
  if (address.startsWith('unix:')) return `unix:${path.join(folder, 'down.sock')}`;
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `127.0.0.1:${port}`;
}

describe('an address list with a replica down', { skip: SKIP }, () => {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'tt-'));
  after(() => fs.rmSync(folder, { recursive: true, force: true }));

  async function listClient() {
    const env = process.env;
    const list = async (a) => `${await downLike(a || ADDRESS, folder)},${a || ADDRESS}`;
    return new Client(await list(ADDRESS), {
      schedulerAddress: await list(env.TASKTIDE_SCHEDULER_ADDRESS),
      registryAddress: await list(env.TASKTIDE_REGISTRY_ADDRESS),
      resultsAddress: await list(env.TASKTIDE_RESULTS_ADDRESS),
    });
  }

  test('a Python worker runs what the Node client submits', { skip: PYTHON_QUEUE ? false : 'no Python worker' }, async () => {
    const client = await listClient();
    try {
      for (let i = 0; i < 10; i++) {
        const handle = await client.submit('t.add', [i, 1], { queue: PYTHON_QUEUE });
        assert.equal(await handle.get({ timeout: 30 }), i + 1);
      }
    } finally {
      client.close();
    }
  });

  test('a Node worker given the list runs tasks', async () => {
    const client = await listClient();
    try {
      await withWorker(
        client,
        {},
        (worker) => worker.register('replicas.add', ([x, y]) => x + y),
        async (worker, queue) => {
          const handles = [];
          for (let i = 0; i < 10; i++) handles.push(await client.submit('replicas.add', [i, 2], { queue }));
          assert.deepEqual(await Promise.all(handles.map((h) => h.get({ timeout: 30 }))), handles.map((_, i) => i + 2));
        },
      );
    } finally {
      client.close();
    }
  });
});
