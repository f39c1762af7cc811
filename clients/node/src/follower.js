// How wait() and result() hear that a task is final: one Results.Follow stream per Client, shared by
// every waiting call. A waiting call adds its task id to the stream (ids named in the same turn of
// the event loop travel in one request) and is resolved when the server answers that id with its
// final result; a call that stops waiting (its timeout, its signal) is taken off, and the id is
// forgotten on the stream once no call waits for it. The stream is opened on first use and ended
// after LINGER_MS with nothing to wait for.
//
// When the stream is lost (a restarted or unreachable results service), a new one is opened after a
// pause (RETRY_MS, 1.6 times longer per failure in a row, up to RETRY_MAX_MS: the channel's own
// reconnection policy) and every id still awaited is named again: a wait outlives a restart. The
// server accepts a stream by sending FOLLOW_HEADER in its headers at once. Once it has accepted one
// of this client's streams, a lost service is a service restarting: streams are opened again while
// calls wait, each ending by its own timeout or signal. A platform never reached is reported
// instead: after MAX_FAILURES streams in a row refused (about 3 s), the waiting calls go to Wait
// calls, which report the error of each one ("cannot reach tasktide at ..."), as any refusal of the
// stream (credentials, a limit) does; a server without Follow (UNIMPLEMENTED, an older version)
// gets Wait calls for good.

import grpc from '@grpc/grpc-js';

import { Unavailable, translate } from './errors.js';

/** Ids followed at once (the server's default batch limit); more waiting calls use Wait. */
export const MAX_FOLLOWED = 10_000;
/** How long a stream with nothing to wait for stays open for the next waiting call. */
export const LINGER_MS = 200;
export const RETRY_MS = 200;
export const RETRY_MAX_MS = 5_000;
/** Streams refused in a row, the service never reached, then the waiting calls use Wait. */
export const MAX_FAILURES = 5;
/** In the headers the service sends as it accepts a Follow stream. */
export const FOLLOW_HEADER = 'tasktide-follow';

const TASK_ID = /^[0-9a-f]{32}$/;
// Statuses after which the stream is opened again: the service was away, restarting or overloaded.
const TRANSIENT = new Set(['UNAVAILABLE', 'INTERNAL', 'UNKNOWN', 'CANCELLED', 'ABORTED', 'OK']);

/** The waiting call should use Wait instead (the stream is not supported, or refused it). */
export class UseWait extends Error {
  constructor(cause) {
    super('waiting by the Follow stream is not possible; waiting by Wait calls', { cause });
    this.name = 'UseWait';
  }
}

export class Follower {
  constructor(results, address) {
    this._results = results;
    this._address = address;
    this._waiters = new Map(); // task id -> Set of {resolve, reject}
    this._call = null;
    this._toFollow = new Set(); // ids to name on the stream in the next request
    this._toForget = new Set();
    this._flushing = false;
    this._linger = null;
    this._retry = null; // the timer of the next reopening
    this._failures = 0;
    this.opened = 0; // streams opened (for tests and diagnostics)
    this.unsupported = false; // the server answered Follow with UNIMPLEMENTED
    this.reached = false; // the service has accepted a stream of this client
    this.closed = false;
  }

  /** True when a call for `taskId` can wait on the stream now. */
  accepts(taskId) {
    return (
      !this.unsupported &&
      !this.closed &&
      TASK_ID.test(taskId) &&
      (this._waiters.has(taskId) || this._waiters.size < MAX_FOLLOWED)
    );
  }

  /**
   * Resolves to the final TaskResult message of `taskId`; rejects with UseWait when the stream
   * cannot serve it. `waiter.stop()` (returned through `handle`) takes the call off.
   */
  wait(taskId, handle) {
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      let set = this._waiters.get(taskId);
      if (!set) {
        set = new Set();
        this._waiters.set(taskId, set);
        this._toForget.delete(taskId);
        this._toFollow.add(taskId);
        this._schedule();
      }
      set.add(waiter);
      clearTimeout(this._linger);
      handle.stop = () => this._stop(taskId, waiter);
    });
  }

  _stop(taskId, waiter) {
    const set = this._waiters.get(taskId);
    if (!set?.delete(waiter) || set.size > 0) return;
    this._waiters.delete(taskId);
    if (this._toFollow.delete(taskId)) return; // never named on the stream
    this._toForget.add(taskId);
    this._schedule();
  }

  /** Sends what was asked in this turn of the event loop, in one request. */
  _schedule() {
    if (this._flushing) return;
    this._flushing = true;
    queueMicrotask(() => {
      this._flushing = false;
      this._flush();
    });
  }

  _flush() {
    if (this._retry !== null) return; // the reopened stream names every id awaited
    if (this._call === null) {
      if (this._waiters.size > 0) this._open();
      return;
    }
    const taskIds = [...this._toFollow];
    const forget = [...this._toForget];
    this._toFollow.clear();
    this._toForget.clear();
    if (taskIds.length || forget.length) this._call.write({ taskIds, forget });
    if (this._waiters.size === 0) this._idle();
  }

  _open() {
    clearTimeout(this._linger);
    this._toFollow.clear();
    this._toForget.clear();
    const call = this._results.Follow();
    this._call = call;
    this.opened += 1;
    let failure = null;
    call.on('metadata', (headers) => {
      if (headers.get(FOLLOW_HEADER).length > 0) this._accepted();
    });
    call.on('data', (resp) => {
      this._accepted(); // a service that sends no FOLLOW_HEADER
      for (const result of resp.results) this._answer(result);
      if (this._waiters.size === 0) this._idle();
    });
    call.on('error', (err) => {
      failure = err;
    });
    // 'status' comes last, after 'error' when the call failed.
    call.on('status', (status) => this._ended(call, failure ?? status));
    call.write({ taskIds: [...this._waiters.keys()], forget: [] });
  }

  _accepted() {
    this._failures = 0;
    this.reached = true;
  }

  _answer(result) {
    const set = this._waiters.get(result.taskId);
    if (!set) return; // no call waits for it any more
    this._waiters.delete(result.taskId);
    for (const { resolve } of set) resolve(result);
  }

  _idle() {
    clearTimeout(this._linger);
    this._linger = setTimeout(() => {
      if (this._waiters.size === 0 && this._call !== null) {
        const call = this._call;
        this._call = null;
        call.end();
      }
    }, LINGER_MS);
  }

  _ended(call, status) {
    if (this._call === call) this._call = null;
    else if (this._call !== null) return; // a stream ended after it was replaced
    const code = codeName(status.code);
    if (this.closed || this._waiters.size === 0) return;
    this._failures += 1;
    const unreachable = this._failures >= MAX_FAILURES && !this.reached;
    if (code === 'UNIMPLEMENTED' || !TRANSIENT.has(code) || unreachable) {
      this._failures = 0;
      if (code === 'UNIMPLEMENTED') this.unsupported = true;
      const err = new UseWait(translate(status, this._address));
      const waiting = [...this._waiters.values()];
      this._waiters.clear();
      for (const set of waiting) for (const { reject } of set) reject(err);
      return;
    }
    const pause = Math.min(RETRY_MS * 1.6 ** (this._failures - 1), RETRY_MAX_MS);
    this._retry = setTimeout(() => {
      this._retry = null;
      if (!this.closed && this._waiters.size > 0 && this._call === null) this._open();
    }, pause);
  }

  /** Ends the stream; the calls still waiting reject with Unavailable. */
  close() {
    this.closed = true;
    clearTimeout(this._linger);
    clearTimeout(this._retry);
    this._retry = null;
    const waiting = [...this._waiters.values()];
    this._waiters.clear();
    const err = new Unavailable(`the client of ${this._address} was closed`, 'UNAVAILABLE');
    for (const set of waiting) for (const { reject } of set) reject(err);
    if (this._call !== null) {
      this._call.cancel();
      this._call = null;
    }
  }
}

function codeName(code) {
  return typeof code === 'string' ? code : (grpc.status[code] ?? 'UNKNOWN');
}
