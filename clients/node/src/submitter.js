// The stream transport of submit(): tasks submitted one at a time travel over one long-lived
// SubmitStream shared by every caller of a Client. Each request carries a sequence number and the
// scheduler answers each by its number, so many submissions are in flight at once and the
// scheduler writes what arrives together in one Redis round trip; each submit() still resolves only
// once its task is held by the platform. When the stream breaks, the submissions in flight reject
// with its error and the next submission opens a new stream. A stream with nothing in flight is
// ended after LINGER_MS, so an open stream never keeps a finished program alive for long.
//
// Once the scheduler announced in the stream's initial metadata (BATCH_HEADER) that it takes
// several submissions per message, submissions made together go as one message (at most what it
// announced, MAX_PER_MESSAGE, and under MAX_BATCH_BYTES and the largest message it announced it
// takes, BYTES_HEADER): those made while others are in flight wait for
// the end of the event loop's iteration (setImmediate), so callers woken by answers read in it
// share a message; callers woken by one batch of answers share the message written when the turn's
// microtasks end. A lone submission (nothing else in flight, its caller answered alone) is written
// at once, as is every one before the announcement or to a scheduler that makes none.

import { ServiceError, Unavailable, translate } from './errors.js';

/** Submissions in flight at once per Client; submit() waits for a place beyond that. */
export const MAX_IN_FLIGHT = 10_000;
/** How long a stream with nothing in flight stays open for the next submission. */
export const LINGER_MS = 200;
/** Initial metadata of a SubmitStream: the most submissions one message may carry. */
export const BATCH_HEADER = 'tasktide-submit-batch';
/** The most submissions the client puts in one message, whatever the scheduler announced. */
export const MAX_PER_MESSAGE = 1_000;
/** Initial metadata of a SubmitStream: the largest message the scheduler takes, in bytes. */
export const BYTES_HEADER = 'tasktide-submit-bytes';
/**
 * A message of several submissions stays under this size, and under what the scheduler announced
 * (one takes 16 MiB by default; one that announces no size gets this bound).
 */
export const MAX_BATCH_BYTES = 1024 * 1024;

export const TRANSPORTS = Object.freeze(['stream', 'unary']);

/** The transport named by the option, else TASKTIDE_SUBMIT_TRANSPORT, else 'stream'. */
export function submitTransport(option, env = process.env) {
  const name = String(option ?? env.TASKTIDE_SUBMIT_TRANSPORT ?? '')
    .trim()
    .toLowerCase();
  if (name === '') return 'stream';
  if (!TRANSPORTS.includes(name)) {
    throw new TypeError(`unknown submit transport ${JSON.stringify(name)} (${TRANSPORTS.join(' or ')})`);
  }
  return name;
}

/**
 * What one message may carry, from `metadata` (a stream's initial metadata): `perMessage`
 * submissions (1 unless announced, at most MAX_PER_MESSAGE), and `batchBytes` together when it
 * carries several (under the announced size and MAX_BATCH_BYTES). A value that is not a decimal
 * number (or a size of 0) is ignored, as if not announced.
 */
export function messageBounds(metadata) {
  const decimal = (key) => {
    const [value] = metadata.get(key);
    return typeof value === 'string' && /^[0-9]+$/.test(value) ? Number(value) : null;
  };
  const count = decimal(BATCH_HEADER) ?? 1;
  const size = decimal(BYTES_HEADER) || MAX_BATCH_BYTES;
  return {
    perMessage: Math.max(1, Math.min(count, MAX_PER_MESSAGE)),
    batchBytes: Math.min(size, MAX_BATCH_BYTES),
  };
}

/**
 * At least the encoded size of `request` as an entry of a message's batch: the bytes of its
 * strings and buffers, the keys of its spec's headers (a map), and room for every field's tag and
 * length, its own included.
 */
export function sizeBound(request) {
  let n = valuesBound(request);
  for (const key of Object.keys(request.spec?.headers ?? {})) n += Buffer.byteLength(key) + 6;
  return n;
}

function valuesBound(value) {
  if (typeof value === 'string') return Buffer.byteLength(value) + 6;
  if (value instanceof Uint8Array) return value.length + 6;
  if (value === null || typeof value !== 'object') return 11;
  let n = 6;
  for (const v of Object.values(value)) n += valuesBound(v);
  return n;
}

class Stream {
  constructor(scheduler, address, onEnd) {
    this.pending = new Map(); // seq (a decimal string, as uint64 fields are read) -> {resolve, reject}
    this.open = true;
    this.timer = null;
    this.perMessage = 1; // until the scheduler's initial metadata says more
    this.batchBytes = MAX_BATCH_BYTES; // unless it says less
    this.queued = []; // requests made together, not yet written (at most perMessage)
    this.queuedBytes = 0; // sizeBound of those
    this.flushDue = false; // a callback will write what is queued
    this.answeredTogether = 0; // answers the last response message held
    this.call = scheduler.SubmitStream();
    this.call.on('metadata', (metadata) => {
      ({ perMessage: this.perMessage, batchBytes: this.batchBytes } = messageBounds(metadata));
    });
    this.call.on('data', (resp) => {
      this.answeredTogether = resp.batch.length || 1;
      if (resp.batch.length === 0) this._answer(resp);
      else for (const entry of resp.batch) this._answer(entry);
    });
    let failure = null;
    this.call.on('error', (err) => {
      failure = translate(err, address);
    });
    // 'status' comes last, after 'error' when the call failed.
    this.call.on('status', () => {
      this.open = false;
      this.queued = [];
      this.queuedBytes = 0;
      clearTimeout(this.timer);
      onEnd(this);
      const err = failure ?? new Unavailable(`the submission stream to ${address} closed`, 'UNAVAILABLE');
      for (const { reject } of this.pending.values()) reject(err);
      this.pending.clear();
    });
  }

  _answer(resp) {
    const waiter = this.pending.get(resp.seq);
    if (!waiter) return; // its caller stopped waiting
    this.pending.delete(resp.seq);
    if (resp.errorCode) {
      waiter.reject(translate({ code: resp.errorCode, details: resp.errorMessage }));
    } else {
      waiter.resolve(resp.result);
    }
    if (this.pending.size === 0) this._linger();
  }

  send(seq, spec, waiter) {
    clearTimeout(this.timer);
    this.pending.set(seq, waiter);
    const request = { seq, spec };
    if (!this.flushDue) {
      if (this.perMessage > 1 && this.pending.size > 1) {
        // Others in flight: their answers, read in this same iteration of the event loop, may
        // wake more callers, so the message waits for the iteration's I/O callbacks.
        setImmediate(this._flushLater);
      } else if (this.perMessage > 1 && this.answeredTogether > 1) {
        // Woken with others by one message's answers: they submit in this turn's microtasks.
        queueMicrotask(this._flushLater);
      } else {
        this.call.write(request); // a lone submission goes at once
        return;
      }
      this.flushDue = true;
    }
    const bytes = sizeBound(request);
    if (this.queuedBytes + bytes > this.batchBytes) this._flush();
    this.queued.push(request);
    this.queuedBytes += bytes;
    if (this.queued.length >= this.perMessage) this._flush();
  }

  _flushLater = () => {
    this.flushDue = false;
    this._flush();
  };

  /** Writes the queued requests as one message (a lone one as itself). */
  _flush() {
    // A request whose caller stopped waiting before it was written is not sent.
    const requests = this.queued.filter((r) => this.pending.has(r.seq));
    this.queued = [];
    this.queuedBytes = 0;
    if (!this.open || requests.length === 0) return;
    this.call.write(requests.length === 1 ? requests[0] : { batch: requests });
  }

  forget(seq) {
    this.pending.delete(seq);
    if (this.pending.size === 0) this._linger();
  }

  _linger() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.end(), LINGER_MS);
  }

  /** No more requests: the scheduler answers those sent, then the stream ends. */
  end() {
    clearTimeout(this.timer);
    if (this.open) {
      this._flush();
      this.open = false;
      this.call.end();
    }
  }
}

export class StreamSubmitter {
  constructor(scheduler, address) {
    this._scheduler = scheduler;
    this._address = address;
    this._stream = null;
    this._seq = 0;
    this._inFlight = 0;
    this._waiting = []; // callers waiting for a place; each holds its own submission
    this.unsupported = false; // the scheduler answered SubmitStream with UNIMPLEMENTED
  }

  /** Resolves to the scheduler's SubmitResponse for `spec`; `signal` stops the wait. */
  async submit(spec, signal) {
    signal?.throwIfAborted();
    while (this._inFlight >= MAX_IN_FLIGHT) {
      await new Promise((resolve) => this._waiting.push(resolve));
      if (signal?.aborted) {
        this._waiting.shift()?.(); // the place this caller was woken for goes to the next one
        throw signal.reason;
      }
    }
    this._inFlight += 1;
    try {
      return await this._send(spec, signal);
    } finally {
      this._inFlight -= 1;
      this._waiting.shift()?.();
    }
  }

  _send(spec, signal) {
    if (this._stream === null || !this._stream.open) {
      this._stream = new Stream(this._scheduler, this._address, (s) => {
        if (this._stream === s) this._stream = null;
      });
    }
    const stream = this._stream;
    const seq = String(++this._seq);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        stream.forget(seq);
        reject(signal.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = (fn) => (value) => {
        signal?.removeEventListener('abort', onAbort);
        fn(value);
      };
      stream.send(seq, spec, { resolve: settle(resolve), reject: settle(reject) });
    });
  }

  /** Ends the stream; submissions still in flight are answered first. */
  close() {
    this._stream?.end();
    this._stream = null;
  }
}

/** True when the error is a scheduler without SubmitStream refusing the stream itself. */
export function streamUnsupported(err) {
  return err instanceof ServiceError && err.code === 'UNIMPLEMENTED';
}
