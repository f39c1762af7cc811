// The tasktide protocol, loaded at run time from the .proto files (no generated code to go stale),
// and the conversions between protocol messages and plain JavaScript values.
//
// int64 and uint64 fields (times, lease tokens) are read as decimal strings, so they round-trip
// exactly; times are handed to users as numbers of Unix milliseconds, which are exact below 2^53.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { openStub } from './connection.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTO_PACKAGE_DIR = path.join('tasktide', 'v1');

// A packed package carries its own copy (see scripts/protos.js); in the repository the client reads
// the repository's proto/ folder. TASKTIDE_PROTO_PATH overrides both.
function protoRoot() {
  const candidates = [
    process.env.TASKTIDE_PROTO_PATH,
    path.resolve(HERE, '..', 'proto'),
    path.resolve(HERE, '..', '..', '..', 'proto'),
  ].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, PROTO_PACKAGE_DIR))) return dir;
  }
  throw new Error(`tasktide .proto files not found; looked in ${candidates.join(', ')}`);
}

let loaded = null;

/** The tasktide.v1 package: service constructors, loaded once on first use. */
export function protocol() {
  if (loaded === null) {
    const root = protoRoot();
    const files = fs
      .readdirSync(path.join(root, PROTO_PACKAGE_DIR))
      .filter((f) => f.endsWith('.proto'))
      .sort()
      .map((f) => path.join(PROTO_PACKAGE_DIR, f));
    const definition = protoLoader.loadSync(files, {
      includeDirs: [root],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    loaded = grpc.loadPackageDefinition(definition).tasktide.v1;
  }
  return loaded;
}

/** A stub of the service `serviceName` at `address`, with the settings of connection.js. */
export function stub(serviceName, address, settings) {
  return openStub(protocol()[serviceName], address, settings);
}

/** A payload message holding `value` as JSON text. */
export function encodePayload(value) {
  const text = JSON.stringify(value === undefined ? null : value);
  if (text === undefined) throw new TypeError('payload is not JSON-compatible');
  return { json: Buffer.from(text, 'utf8') };
}

/** The value of a payload message: parsed JSON, the raw Any message, or `fallback` when empty. */
export function decodePayload(payload, fallback = null) {
  if (!payload) return fallback;
  if (payload.kind === 'json') {
    return payload.json && payload.json.length ? JSON.parse(payload.json.toString('utf8')) : fallback;
  }
  if (payload.kind === 'message') return payload.message;
  return fallback;
}

export const TASK_STATES = Object.freeze([
  'UNKNOWN',
  'SCHEDULED',
  'QUEUED',
  'RUNNING',
  'RETRYING',
  'SUCCEEDED',
  'FAILED',
  'CANCELLED',
  'EXPIRED',
  'DEAD',
]);
export const FINAL_STATES = Object.freeze(new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'EXPIRED', 'DEAD']));

/** 'TASK_STATE_SUCCEEDED' (or its number) -> 'SUCCEEDED'; unspecified -> 'UNKNOWN'. */
export function stateName(value) {
  if (typeof value === 'number') return TASK_STATES[value] ?? 'UNKNOWN';
  const name = String(value ?? '').replace(/^TASK_STATE_/, '');
  return name === 'UNSPECIFIED' || !TASK_STATES.includes(name) ? 'UNKNOWN' : name;
}

export function ms(value) {
  return value === undefined || value === null || value === '' ? 0 : Number(value);
}

function error(e) {
  return e && (e.type || e.message || e.traceback)
    ? { type: e.type, message: e.message, traceback: e.traceback }
    : null;
}

/** A TaskResult message as a plain object, its result decoded. */
export function toResult(r) {
  return {
    taskId: r.taskId,
    found: Boolean(r.found),
    state: stateName(r.state),
    name: r.name,
    attempt: r.attempt,
    result: decodePayload(r.result),
    error: error(r.error),
    updatedMs: ms(r.updatedMs),
    createdMs: ms(r.createdMs),
    workerId: r.workerId,
  };
}

/** A TaskEvent message as a plain object, its result decoded. */
export function toEvent(e) {
  return {
    taskId: e.taskId,
    cursor: e.cursor,
    state: stateName(e.state),
    atMs: ms(e.atMs),
    attempt: e.attempt,
    name: e.name,
    queue: e.queue,
    workerId: e.workerId,
    result: decodePayload(e.result),
    error: error(e.error),
    progress: e.progress,
    message: e.message,
    progressOnly: Boolean(e.progressOnly),
  };
}
