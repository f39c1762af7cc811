// A TaskSpec message from the options of submit(), with the meaning and units of the Python client's
// build_spec (clients/python/tasktide/_spec.py): times in seconds, a number for `eta` is Unix
// seconds, a number for `expires` is seconds from now; a Date is an instant for both.

import { encodePayload } from './protocol.js';

// A numeric eta beyond this is almost surely Unix milliseconds (it would be the year 5138 in seconds).
const ETA_SECONDS_LIMIT = 1e11;

function finite(name, value) {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new TypeError(`${name} must be a finite number, got ${String(value)}`);
  return n;
}

function instantMs(name, value) {
  if (value instanceof Date) {
    const t = value.getTime();
    if (Number.isNaN(t)) throw new TypeError(`${name} is an invalid Date`);
    return t;
  }
  return finite(name, value) * 1000;
}

function etaMs(eta) {
  if (!(eta instanceof Date) && Math.abs(Number(eta)) >= ETA_SECONDS_LIMIT) {
    throw new RangeError(`eta as a number is Unix seconds (as in the Python client); got ${eta}, milliseconds?`);
  }
  return Math.round(instantMs('eta', eta));
}

function expiresMs(expires) {
  if (expires instanceof Date) return Math.round(instantMs('expires', expires));
  return Math.round(Date.now() + finite('expires', expires) * 1000);
}

const RETRY_OPTIONS = ['maxRetries', 'retryBackoff', 'retryBackoffMax', 'retryJitter'];

/**
 * A TaskSpec message for `name`. Options (the table in README.md): kwargs, queue, priority,
 * countdown (seconds), eta (Date, or Unix seconds), expires (Date, or seconds from now),
 * idempotencyKey, maxRetries, retryBackoff, retryBackoffMax, retryJitter, softTimeLimit, timeLimit,
 * rateLimit, headers, link.
 */
export function buildSpec(name, args = [], options = {}) {
  if (typeof name !== 'string' || !name) throw new TypeError('a task name is required');
  if (!Array.isArray(args)) throw new TypeError('args must be an array');
  const o = options;
  const spec = {
    name,
    queue: o.queue ?? '',
    args: encodePayload(args),
    kwargs: encodePayload(o.kwargs ?? {}),
    priority: o.priority ?? 0,
    countdown: o.countdown ?? 0,
    idempotencyKey: o.idempotencyKey ?? '',
    softTimeLimit: o.softTimeLimit ?? 0,
    timeLimit: o.timeLimit ?? 0,
    rateLimit: o.rateLimit ?? '',
    headers: { ...(o.headers ?? {}) },
    link: [...(o.link ?? [])],
  };
  if (o.eta !== undefined && o.eta !== null) spec.etaMs = String(etaMs(o.eta));
  if (o.expires !== undefined && o.expires !== null) spec.expiresMs = String(expiresMs(o.expires));
  if (RETRY_OPTIONS.some((k) => o[k] !== undefined)) {
    spec.retry = {
      maxRetries: o.maxRetries ?? 0,
      backoffBase: o.retryBackoff ?? 1,
      backoffMax: o.retryBackoffMax ?? 600,
      jitter: o.retryJitter ?? true,
    };
  }
  return spec;
}
