// Connection options against a small gRPC server of the test's own (no platform needed): the bearer
// token and interceptors reach the server, a refused credential stops the worker with the error,
// and an AbortSignal ends submit, get, wait and watch.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Client, DEFAULT_CHANNEL_OPTIONS, PermissionDenied, Unauthenticated, Worker } from '../src/index.js';
import { connectionSettings } from '../src/connection.js';
import { protocol } from '../src/protocol.js';
import { reconnectDelay } from '../src/worker.js';
import { only, recordingLogger } from './_support.js';

const TASK_ID = 'a'.repeat(32);

/** A self-signed certificate for localhost and 127.0.0.1, made with openssl: {cert, key} buffers. */
function selfSigned() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tasktide-tls-'));
  try {
    const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost'].concat(
        ['-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert],
      ),
      { stdio: 'ignore' },
    );
    return { cert: fs.readFileSync(cert), key: fs.readFileSync(key) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A server answering Submit and SubmitStream (but tasks named 'hang'), holding Wait and Watch open,
 * and refusing Session with `refusal`.
 */
async function fakePlatform(serverCredentials = grpc.ServerCredentials.createInsecure()) {
  const seen = { metadata: [], sessions: 0, refusal: grpc.status.UNAUTHENTICATED, held: [] };
  const record = (call) => seen.metadata.push({ path: call.getPath?.() ?? '', ...call.metadata.getMap() });
  const v1 = protocol();
  const server = new grpc.Server();
  server.addService(v1.Scheduler.service, {
    Submit(call, callback) {
      record(call);
      if (call.request.spec.name === 'hang') seen.held.push(callback);
      else callback(null, { taskId: TASK_ID, existing: false });
    },
    SubmitStream(call) {
      record(call);
      call.on('data', (req) => {
        if (req.spec.name !== 'hang') call.write({ seq: req.seq, result: { taskId: TASK_ID, existing: false } });
      });
      call.on('end', () => call.end());
    },
  });
  server.addService(v1.Results.service, {
    Wait(call, callback) {
      record(call);
      seen.held.push(callback); // never answered: only an abort ends the wait
    },
    Watch(call) {
      record(call);
      seen.held.push(call);
    },
  });
  server.addService(v1.Registry.service, {
    Session(call) {
      record(call);
      seen.sessions += 1;
      call.on('data', () => {});
      call.emit('error', { code: seen.refusal, details: 'no valid token' });
    },
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', serverCredentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, seen, address: `127.0.0.1:${port}` };
}

function aborted(err) {
  return err?.name === 'AbortError' || err?.name === 'TimeoutError';
}

describe('connection options', () => {
  let fake;
  before(async () => {
    fake = await fakePlatform();
  });
  after(() => fake.server.forceShutdown());

  test('the token is sent as a bearer authorization, after the caller interceptors', async () => {
    const calls = [];
    const interceptor = (options, nextCall) => {
      calls.push(options.method_definition.path);
      return new grpc.InterceptingCall(nextCall(options));
    };
    const client = new Client(fake.address, only(fake.address, { token: 's3cret', interceptors: [interceptor] }));
    try {
      const handle = await client.submit('t.add', [1, 2]);
      assert.equal(handle.id, TASK_ID);
    } finally {
      client.close();
    }
    assert.equal(fake.seen.metadata.at(-1).authorization, 'Bearer s3cret');
    assert.deepEqual(calls, ['/tasktide.v1.Scheduler/SubmitStream']);
  });

  test('the token is read from TASKTIDE_TOKEN by default; none is sent without one', async () => {
    const env = { ...process.env, TASKTIDE_TOKEN: 'from-env' };
    assert.equal(connectionSettings({}, env).interceptors.length, 1);
    assert.equal(connectionSettings({}, { ...env, TASKTIDE_TOKEN: '' }).interceptors.length, 0);
    const saved = process.env.TASKTIDE_TOKEN;
    process.env.TASKTIDE_TOKEN = 'from-env';
    const client = new Client(fake.address, only(fake.address));
    if (saved === undefined) delete process.env.TASKTIDE_TOKEN;
    else process.env.TASKTIDE_TOKEN = saved;
    try {
      await client.submit('t.add', [1, 2]);
      assert.equal(fake.seen.metadata.at(-1).authorization, 'Bearer from-env');
      const anonymous = new Client(fake.address, only(fake.address, { token: '' }));
      await anonymous.submit('t.add', [1, 2]);
      anonymous.close();
      assert.equal(fake.seen.metadata.at(-1).authorization, undefined);
    } finally {
      client.close();
    }
  });

  test('TLS from TASKTIDE_TLS_CA by default; unreadable or half-given files are clear errors', async () => {
    const { cert, key } = selfSigned();
    const tls = await fakePlatform(grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }]));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tasktide-ca-'));
    const ca = path.join(dir, 'ca.pem');
    fs.writeFileSync(ca, cert);
    try {
      const saved = { ca: process.env.TASKTIDE_TLS_CA, token: process.env.TASKTIDE_TOKEN };
      Object.assign(process.env, { TASKTIDE_TLS_CA: ca, TASKTIDE_TOKEN: 'tls-env' });
      const byName = tls.address.replace('127.0.0.1', 'localhost');
      const client = new Client(byName, only(byName));
      for (const [name, value] of [['TASKTIDE_TLS_CA', saved.ca], ['TASKTIDE_TOKEN', saved.token]]) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      try {
        await client.submit('t.add', [1, 2]);
        assert.equal(tls.seen.metadata.at(-1).authorization, 'Bearer tls-env');
      } finally {
        client.close();
      }
      assert.throws(() => connectionSettings({}, { TASKTIDE_TLS_CA: path.join(dir, 'missing.pem') }), /TASKTIDE_TLS_CA/);
      assert.throws(() => connectionSettings({}, { TASKTIDE_TLS_CERT: ca }), /TASKTIDE_TLS_CERT and TASKTIDE_TLS_KEY/);
      const explicit = grpc.credentials.createInsecure();
      assert.equal(connectionSettings({ credentials: explicit }, { TASKTIDE_TLS_CA: ca }).credentials, explicit);
    } finally {
      tls.server.forceShutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('TLS channel credentials with call credentials: the call is encrypted and carries them', async () => {
    const { cert, key } = selfSigned();
    const tls = await fakePlatform(grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }]));
    const callCredentials = grpc.credentials.createFromMetadataGenerator((params, callback) => {
      const metadata = new grpc.Metadata();
      metadata.set('x-tenant', 'shop');
      callback(null, metadata);
    });
    const address = tls.address.replace('127.0.0.1', 'localhost');
    const client = new Client(address, only(address, { credentials: grpc.credentials.createSsl(cert), callCredentials, token: 't' }));
    const plain = new Client(address, only(address, { token: 't' }));
    try {
      assert.equal((await client.submit('t.add', [1, 2])).id, TASK_ID);
      const seen = tls.seen.metadata.at(-1);
      assert.deepEqual([seen['x-tenant'], seen.authorization], ['shop', 'Bearer t']);
      const refused = (e) => e.code === 'UNAVAILABLE';
      await assert.rejects(plain.submit('t.add', [1, 2], { signal: AbortSignal.timeout(10_000) }), refused);
    } finally {
      client.close();
      plain.close();
      tls.server.forceShutdown();
    }
  });

  test('keepalive and message size defaults; channel options override them', () => {
    const s = connectionSettings({ channelOptions: { 'grpc.keepalive_time_ms': 60_000 } }, {});
    assert.equal(s.channelOptions['grpc.keepalive_time_ms'], 60_000);
    assert.equal(s.channelOptions['grpc.keepalive_timeout_ms'], DEFAULT_CHANNEL_OPTIONS['grpc.keepalive_timeout_ms']);
    assert.equal(s.channelOptions['grpc.max_receive_message_length'], 16 * 1024 * 1024);
    assert.throws(() => connectionSettings({ callCredentials: grpc.credentials.createEmpty() }, {}), TypeError);
  });

  for (const [code, Cls] of [
    [grpc.status.UNAUTHENTICATED, Unauthenticated],
    [grpc.status.PERMISSION_DENIED, PermissionDenied],
  ]) {
    test(`${Cls.name} from the registry stops the worker with the error instead of reconnecting`, { timeout: 20_000 }, async () => {
      fake.seen.refusal = code;
      const before = fake.seen.sessions;
      const client = new Client(fake.address, only(fake.address, { token: 'expired' }));
      const logger = recordingLogger();
      const worker = new Worker(client, { queues: ['q'], logger });
      worker.register('t.add', ([x, y]) => x + y);
      try {
        const err = await worker.run().then(
          () => assert.fail('run() should reject'),
          (e) => e,
        );
        assert.ok(err instanceof Cls, String(err));
        assert.equal(err.message, 'no valid token');
        assert.equal(fake.seen.sessions - before, 1, 'one session was tried, no reconnect');
        assert.equal(fake.seen.metadata.at(-1).authorization, 'Bearer expired');
      } finally {
        client.close();
      }
    });
  }

  test('an AbortSignal ends submit, get, wait and watch', async () => {
    const client = new Client(fake.address, only(fake.address));
    try {
      await assert.rejects(client.submit('hang', [], { signal: AbortSignal.timeout(50) }), aborted);
      const handle = await client.submit('t.add', [1, 2]);
      await assert.rejects(handle.get({ signal: AbortSignal.timeout(50) }), aborted);
      const controller = new AbortController();
      const waiting = handle.wait({ timeout: 600, signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(waiting, aborted);
      await assert.rejects(async () => {
        for await (const event of handle.watch({ signal: AbortSignal.timeout(50) })) assert.fail(String(event));
      }, aborted);
      const already = AbortSignal.abort();
      await assert.rejects(client.submit('t.add', [1], { signal: already }), aborted);
    } finally {
      client.close();
    }
  });

  test('reconnect pauses grow, are capped, and are jittered over their upper half', () => {
    assert.equal(reconnectDelay(0, () => 0), 100);
    assert.equal(reconnectDelay(0, () => 1), 200);
    assert.equal(reconnectDelay(3, () => 1), 1600);
    assert.equal(reconnectDelay(30, () => 1), 5000);
    assert.equal(reconnectDelay(30, () => 0), 2500);
  });
});
