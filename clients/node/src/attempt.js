// One attempt of a task on a Node worker: runs the registered function and turns what happened into
// an Outcome message. Time limits and cancellation are supervised here.
//
// JavaScript cannot stop a running function from outside. A soft time limit or a cancel signal
// aborts `ctx.signal`, for the task to notice; the hard time limit, or the end of a cancel's grace
// period, reports the attempt as TIMEOUT or CANCELLED at once, aborts `ctx.signal` (if it was not
// already) and leaves the function to finish on its own, its result ignored.

import { decodePayload, encodePayload } from './protocol.js';

export const SUCCESS = 'OUTCOME_KIND_SUCCESS';
export const FAILURE = 'OUTCOME_KIND_FAILURE';
export const RETRY = 'OUTCOME_KIND_RETRY';
export const CANCELLED = 'OUTCOME_KIND_CANCELLED';
export const TIMEOUT = 'OUTCOME_KIND_TIMEOUT';

/** Thrown by `ctx.retry()`: ask for another attempt. */
export class RetryRequested extends Error {
  constructor(countdown, cause) {
    super(cause ? `retry requested: ${cause.message ?? cause}` : 'retry requested');
    this.name = 'RetryRequested';
    this.countdown = countdown;
    this.retryCause = cause;
  }
}

/** The reason of `ctx.signal` when the task's soft time limit passed. */
export class SoftTimeLimitExceeded extends Error {
  constructor(seconds) {
    super(`soft time limit of ${seconds} s exceeded`);
    this.name = 'SoftTimeLimitExceeded';
  }
}

/** The reason of `ctx.signal` when the task's hard time limit passed. */
export class TimeLimitExceeded extends Error {
  constructor(seconds) {
    super(`hard time limit of ${seconds} s exceeded`);
    this.name = 'TimeLimitExceeded';
  }
}

/** The reason of `ctx.signal` when the worker's shutdown limit passed and the task was given back. */
export class ShutdownLimitExceeded extends Error {
  constructor(seconds) {
    super(`the worker's shutdown limit of ${seconds} s passed; the task was given back`);
    this.name = 'ShutdownLimitExceeded';
  }
}

/** The reason of `ctx.signal` when the task was cancelled. */
export class CancelRequested extends Error {
  constructor() {
    super('the task was cancelled');
    this.name = 'CancelRequested';
  }
}

/** A thrown value as a TaskError message: its name (or class name), message and stack. */
export function errorOf(err) {
  if (err instanceof Error) {
    const ctor = err.constructor?.name;
    const type = err.name && err.name !== 'Error' ? err.name : ctor || 'Error';
    return { type, message: String(err.message ?? ''), traceback: String(err.stack ?? '') };
  }
  return { type: 'Error', message: String(err), traceback: '' };
}

/** Seconds before attempt `attempt + 1`: exponential, capped, with full jitter if asked. */
export function backoff(policy, attempt) {
  if (!(policy.backoffBase > 0)) return 0;
  const delay = Math.min(policy.backoffBase * 2 ** attempt, policy.backoffMax || Infinity);
  return policy.jitter ? Math.random() * delay : delay;
}

/** The submitted retry policy when it allows retries, else the one the task was registered with. */
export function retryPolicy(spec, options) {
  if (spec.retry && spec.retry.maxRetries > 0) return spec.retry;
  return {
    maxRetries: options.maxRetries ?? 0,
    backoffBase: options.retryBackoff ?? 1,
    backoffMax: options.retryBackoffMax ?? 600,
    jitter: options.retryJitter ?? true,
  };
}

export class Attempt {
  /**
   * `assignment`: the Assignment message; `entry`: {fn, options} or undefined for an unknown name;
   * `progress(leaseRef, value, message)` sends a progress report.
   */
  constructor(assignment, entry, workerId, progress) {
    const task = assignment.task;
    this.assignment = assignment;
    this.entry = entry;
    this.workerId = workerId;
    this.lease = { taskId: task.id, queue: task.spec.queue, leaseToken: assignment.leaseToken };
    this.controller = new AbortController();
    this.startedAt = undefined; // performance.now() when its function was called (the worker's)
    this.cancelRequested = false;
    this.startedMs = Date.now();
    this.timers = [];
    this.settled = false;
    this.done = new Promise((resolve) => {
      this._resolve = resolve;
    });
    const attempt = this;
    this.ctx = {
      taskId: task.id,
      name: task.spec.name,
      attempt: task.attempt,
      queue: task.spec.queue,
      delivery: assignment.delivery,
      signal: this.controller.signal,
      headers: task.spec.headers ?? {},
      get cancelled() {
        return attempt.cancelRequested;
      },
      progress: (value, message = '') => progress(this.lease, Number(value), String(message)),
      retry: ({ countdown, cause } = {}) => {
        throw new RetryRequested(countdown, cause);
      },
      throwIfCancelled: () => {
        if (this.cancelRequested) throw new CancelRequested();
      },
    };
  }

  outcome(kind, extra = {}) {
    return {
      taskId: this.lease.taskId,
      queue: this.lease.queue,
      leaseToken: this.lease.leaseToken,
      attempt: this.assignment.task.attempt,
      workerId: this.workerId,
      startedMs: String(this.startedMs),
      finishedMs: String(Date.now()),
      kind,
      ...extra,
    };
  }

  /** An outcome for an attempt stopped from outside (time limit, cancellation). */
  stopped(kind, type, message) {
    return this.outcome(kind, { error: { type, message, traceback: '' } });
  }

  _settle(outcome) {
    if (this.settled) return;
    this.settled = true;
    for (const t of this.timers) clearTimeout(t);
    this._resolve(outcome);
  }

  _later(seconds, fn) {
    const t = setTimeout(fn, seconds * 1000);
    t.unref?.();
    this.timers.push(t);
  }

  /** Start the attempt; `done` resolves to its Outcome message (null if given back), never rejects. */
  start() {
    const spec = this.assignment.task.spec;
    if (!this.entry) {
      const msg = `no task named '${spec.name}' is registered on worker ${this.workerId}`;
      this._settle(this.stopped(FAILURE, 'tasktide.UnknownTask', msg));
      return this.done;
    }
    if (spec.softTimeLimit > 0) {
      this._later(spec.softTimeLimit, () => this.controller.abort(new SoftTimeLimitExceeded(spec.softTimeLimit)));
    }
    if (spec.timeLimit > 0) {
      this._later(spec.timeLimit, () => {
        const reason = new TimeLimitExceeded(spec.timeLimit);
        this._settle(this.stopped(TIMEOUT, 'tasktide.TimeLimitExceeded', reason.message));
        if (!this.controller.signal.aborted) this.controller.abort(reason); // the function is told to stop
      });
    }
    const args = decodePayload(spec.args, []);
    const kwargs = decodePayload(spec.kwargs, {});
    Promise.resolve()
      .then(() => this.entry.fn(args, kwargs, this.ctx))
      .then(
        (value) => this._settle(this._success(value)),
        (err) => this._settle(this._failure(err)),
      );
    return this.done;
  }

  /** A cancel signal: abort ctx.signal now, report CANCELLED after `grace` seconds if still running. */
  cancel(grace) {
    this.cancelRequested = true;
    this.controller.abort(new CancelRequested());
    const msg = 'cancelled; stopped after the grace period';
    this._later(grace, () => this._settle(this.stopped(CANCELLED, 'tasktide.Cancelled', msg)));
  }

  /** Given back unfinished (shutdown limit): `done` resolves to null and the function is told to stop. */
  abandon(reason) {
    this._settle(null);
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  _success(value) {
    try {
      return this.outcome(SUCCESS, { result: encodePayload(value) });
    } catch (err) {
      return this.outcome(FAILURE, { error: errorOf(err) }); // a result that is not JSON fails the task
    }
  }

  _failure(err) {
    const policy = retryPolicy(this.assignment.task.spec, this.entry.options);
    if (err instanceof RetryRequested) return this._retryOrFail(err.retryCause ?? err, err.countdown, true, policy);
    if (this.cancelRequested) return this.outcome(CANCELLED, { error: errorOf(err) });
    if (this.controller.signal.reason instanceof SoftTimeLimitExceeded) {
      return this.outcome(TIMEOUT, { error: errorOf(err) });
    }
    const auto = this.entry.options.autoretry;
    const forced = typeof auto === 'function' ? Boolean(auto(err)) : Boolean(auto);
    return this._retryOrFail(err, undefined, forced, policy);
  }

  _retryOrFail(err, countdown, forced, policy) {
    const attempt = this.assignment.task.attempt;
    if (forced && attempt < policy.maxRetries) {
      return this.outcome(RETRY, { error: errorOf(err), retryCountdown: countdown ?? backoff(policy, attempt) });
    }
    return this.outcome(FAILURE, { error: errorOf(err), retriesExhausted: forced && policy.maxRetries > 0 });
  }
}
