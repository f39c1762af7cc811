// The worker runtime: one Session stream to the registry per worker.
//
// The worker says hello, reads the welcome (lease length), then grants credit: at most that many
// assignments are sent before more credit arrives. Finished attempts are flushed as outcome
// batches, each returning its credit: the outcomes of attempts that finish while others run go
// together on the next turn of the event loop, the outcome of the last one running at once.
// Heartbeats every third of the lease extend every lease held. stop() drains: nothing new starts,
// leases of tasks not started are released, running tasks finish, their outcomes are flushed, and
// the stream is closed. With a shutdown limit, attempts still running when it passes are given back
// (their leases released, their ctx.signal aborted) and the worker returns. A lost stream is
// reopened after a jittered, growing pause; a refusal of the credentials (UNAUTHENTICATED,
// PERMISSION_DENIED) ends run() with that error instead.
//
// What waits to be written stays bounded while the stream cannot take it (no session, or one held
// up by flow control: call.write() returned false and 'drain' has not come): progress is superseded
// by the next report of the same attempt, so only the latest report of each attempt waits, and one
// heartbeat at most, built when written. Outcomes are never dropped: one per assignment in hand,
// bounded by the credit. An attempt's latest progress is written before its outcome.

import crypto from 'node:crypto';
import os from 'node:os';

import { Attempt, CANCELLED, ShutdownLimitExceeded } from './attempt.js';
import { CreditWindow } from './credit.js';
import { InDoubt } from './indoubt.js';
import { isAuthError, translate } from './errors.js';
import { deferred, helloMessage, reconnectDelay } from './session.js';

export { reconnectDelay };

const CLOSE_WAIT_MS = 2000;

export class Worker {
  /**
   * Options: queues (consumed in order, default ['default']), concurrency (default 4), prefetch
   * (assignments held beyond concurrency; by default it follows the length of the tasks, from 3 to
   * 32 per slot: credit.js), workerId, maxBatch (outcomes per message, default 256), handleSignals
   * (drain on SIGTERM/SIGINT, default false), logger (console), shutdownTimeout (seconds stop()
   * waits for running tasks before giving them back; default none).
   */
  constructor(client, options = {}) {
    this.client = client;
    this.queues = [...(options.queues ?? ['default'])];
    this.concurrency = options.concurrency ?? 4;
    if (!(Number.isInteger(this.concurrency) && this.concurrency > 0)) {
      throw new TypeError('concurrency must be a positive integer');
    }
    this.prefetch = options.prefetch ?? 0; // 0: follows the length of the tasks
    if (!(Number.isInteger(this.prefetch) && this.prefetch >= 0)) {
      throw new TypeError('prefetch must be a whole number (0: it follows the length of the tasks)');
    }
    this._window = new CreditWindow(this.concurrency, this.prefetch);
    this.workerId = options.workerId ?? `${os.hostname()}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    this.maxBatch = options.maxBatch ?? 256;
    this.handleSignals = Boolean(options.handleSignals);
    this.logger = options.logger ?? console;
    this.shutdownTimeout = options.shutdownTimeout ?? null;
    this.leaseSeconds = 30;
    this.completed = 0;
    this._tasks = new Map(); // name -> {fn, options}
    this._held = new Map(); // task id -> LeaseRef of every assignment not yet reported
    this._ready = []; // assignments not started
    this._active = new Map(); // task id -> Attempt
    this._cancelPending = new Set(); // not started, cancelled: never run
    this._outbox = []; // outcomes not yet sent
    this._inDoubt = new InDoubt(); // outcomes sent during the last lease: sent again after a lost session
    this._progressWaiting = new Map(); // 'taskId/leaseToken' -> the latest progress report not yet written
    this._flushQueued = false;
    this._session = null;
    this._stopping = false;
    this._idle = null; // deferred: resolved when nothing is running
    this._wake = null; // deferred: interrupts the reconnect pause
    this._runPromise = null;
    this._limitTimer = null;
  }

  /**
   * Register `fn(args, kwargs, ctx)` (sync or async) under `name`. Options: maxRetries, retryBackoff,
   * retryBackoffMax, retryJitter (used when the submission carries no retry policy), and autoretry
   * (true, or a function of the error) to retry on a thrown error.
   */
  register(name, fn, options = {}) {
    if (typeof fn !== 'function') throw new TypeError(`task ${name}: a function is required`);
    this._tasks.set(name, { fn, options });
    return this;
  }

  get taskNames() {
    return [...this._tasks.keys()].sort();
  }

  /** The credit window aimed at now: concurrency plus the prefetch. */
  get credit() {
    return this._window.target();
  }

  /** Run until stop() (or a Drain from the registry); resolves once drained. */
  run() {
    if (this._runPromise === null) this._runPromise = this._run();
    return this._runPromise;
  }

  /**
   * Begin a graceful drain; resolves when run() has finished. `timeout` (seconds, default the
   * shutdownTimeout option): after it, tasks still running are given back and run() returns.
   */
  stop({ timeout } = {}) {
    if (!this._stopping) {
      this._stopping = true;
      this._wake?.resolve();
      if (this._session?.welcomed) this._drain(this._session);
      else this._session?.call.cancel();
    }
    const limit = timeout ?? this.shutdownTimeout;
    if (limit !== null && limit !== undefined && this._limitTimer === null && this._runPromise) {
      const giveBack = () => this._abandon(new ShutdownLimitExceeded(limit));
      this._limitTimer = setTimeout(giveBack, Math.max(0, limit) * 1000);
    }
    return this._runPromise ?? Promise.resolve();
  }

  async _run() {
    const onSignal = () => this.stop();
    if (this.handleSignals) for (const s of ['SIGTERM', 'SIGINT']) process.on(s, onSignal);
    let failures = 0;
    try {
      while (!this._stopping) {
        const { error, welcomed } = await this._openSession();
        if (error && isAuthError(translate(error))) throw this._refused(translate(error, this.client.addresses.registry));
        if (this._stopping) break;
        if (welcomed) failures = 0;
        const why = error ? `${error.code ?? ''} ${error.details ?? error.message}`.trim() : 'closed by the registry';
        this.logger.warn?.(`tasktide worker ${this.workerId}: session lost (${why}); reconnecting`);
        this._wake = deferred();
        const pause = setTimeout(this._wake.resolve, reconnectDelay(failures));
        await this._wake.promise;
        clearTimeout(pause);
        failures += 1;
      }
      await this._whenIdle();
    } finally {
      clearTimeout(this._limitTimer);
      if (this.handleSignals) for (const s of ['SIGTERM', 'SIGINT']) process.off(s, onSignal);
    }
  }

  /** The worker stops on a refusal of its credentials: running tasks are abandoned, not waited for. */
  _refused(err) {
    this._stopping = true;
    this.logger.error?.(`tasktide worker ${this.workerId}: the registry refused the session (${err.message})`);
    this._abandon(err);
    return err;
  }

  /** Give back every attempt still running (their ctx.signal aborted with `reason`); run() returns. */
  _abandon(reason) {
    const leases = [];
    for (const [id, attempt] of this._active) {
      attempt.abandon(reason);
      const ref = this._held.get(id);
      if (ref) leases.push(ref);
      this._held.delete(id);
    }
    this._active.clear();
    if (leases.length) {
      this.logger.warn?.(`tasktide worker ${this.workerId}: ${leases.length} task(s) given back: ${reason.message}`);
      if (this._session?.welcomed) this._write(this._session, { release: { leases } });
    }
    this._idle?.resolve();
    this._idle = null;
  }

  /** One Session stream, from hello to its end; resolves with {error, welcomed}. */
  _openSession() {
    return new Promise((resolve) => {
      const call = this.client.registry().Session();
      const s = { call, welcomed: false, open: true, heartbeat: null };
      this._session = s;
      call.on('data', (msg) => this._onMessage(s, msg));
      call.on('error', () => {}); // the status below says how the stream ended
      call.on('status', (status) => {
        s.open = false;
        clearInterval(s.heartbeat);
        if (this._session === s) this._session = null;
        this._dropReady(); // their leases expire and the tasks are redelivered
        resolve({ error: status.code === 0 ? null : status, welcomed: s.welcomed });
      });
      this._write(s, helloMessage(this));
    });
  }

  /** Messages waiting to be written: outcomes, latest progress reports, and the stream's own buffer. */
  get outboxSize() {
    return this._outbox.length + this._progressWaiting.size + (this._session?.call.writableLength ?? 0);
  }

  _write(s, message) {
    if (!s.open || s.halfClosed || s.call.write(message) || s.blocked) return;
    s.blocked = true; // held up: progress and heartbeats wait (coalesced) for the stream to drain
    s.call.once('drain', () => {
      s.blocked = false;
      if (s.heartbeatDue) this._heartbeat(s);
      this._writeProgress(s);
    });
  }

  _onMessage(s, msg) {
    switch (msg.kind) {
      case 'welcome':
        this.leaseSeconds = msg.welcome.leaseSeconds || this.leaseSeconds;
        if (!s.welcomed) this._welcomed(s);
        break;
      case 'assignments':
        for (const a of msg.assignments.assignments) this._assigned(s, a);
        this._pump();
        break;
      case 'cancel':
        this._cancel(msg.cancel.taskId, msg.cancel.graceSeconds);
        break;
      case 'drain':
        this.stop();
        break;
      case 'resize':
        this._resize(s, msg.resize.concurrency);
        break;
      case 'rejected': {
        const ref = msg.rejected.lease;
        const why = msg.rejected.reason;
        if (!this._inDoubt.wasResent(ref)) {
          this.logger.warn?.(`tasktide worker ${this.workerId}: lease rejected for ${ref.taskId}: ${why}`);
        }
        if (this._held.get(ref.taskId)?.leaseToken === ref.leaseToken) this._held.delete(ref.taskId);
        break;
      }
      default:
        break;
    }
  }

  _welcomed(s) {
    s.welcomed = true;
    if (this._stopping) {
      this._drain(s);
      return;
    }
    // Attempts still running from a lost session, and unsent outcomes, return their credit when flushed.
    const credit = this._window.open(this._active.size + this._outbox.length);
    if (credit > 0) this._write(s, { credit });
    // Outcomes a lost session may have lost unread; their credit was returned when first sent.
    const again = this._inDoubt.take(this.leaseSeconds * 1000);
    if (again.length) this._write(s, { outcomes: { outcomes: again, credit: 0 } });
    this._flush();
    const every = Math.max(this.leaseSeconds / 3, 0.05) * 1000;
    s.heartbeat = setInterval(() => this._heartbeat(s), every);
    this._writeProgress(s);
  }

  _heartbeat(s) {
    s.heartbeatDue = s.blocked;
    if (!s.blocked && this._held.size) this._write(s, { heartbeat: { leases: [...this._held.values()] } });
  }

  _assigned(s, a) {
    const t = a.task;
    const ref = { taskId: t.id, queue: t.spec.queue, leaseToken: a.leaseToken };
    if (this._stopping) {
      this._write(s, { release: { leases: [ref] } });
      return;
    }
    this._held.set(t.id, ref);
    this._ready.push(a);
  }

  /**
   * Run at most `concurrency` at a time from now on (ResizeWorker): attempts running beyond it
   * finish first; a larger window's credit is granted at once; the registry hears the new size.
   */
  _resize(s, concurrency) {
    if (!(concurrency >= 1) || this._stopping) return;
    this.concurrency = concurrency;
    const credit = this._window.resize(concurrency);
    if (credit > 0) this._write(s, { credit });
    this._write(s, { concurrency });
    this._pump();
  }

  _pump() {
    while (!this._stopping && this._active.size < this.concurrency && this._ready.length) {
      this._start(this._ready.shift());
    }
  }

  _start(a) {
    const attempt = new Attempt(a, this._tasks.get(a.task.spec.name), this.workerId, (lease, value, message) =>
      this._progress(lease, value, message),
    );
    const id = a.task.id;
    this._active.set(id, attempt);
    if (this._cancelPending.delete(id)) {
      attempt.settled = true;
      this._finished(attempt, attempt.stopped(CANCELLED, 'tasktide.Cancelled', 'cancelled before it started'));
      return;
    }
    let started = false;
    const run = () => {
      started = true;
      attempt.startedAt = performance.now();
      return attempt.start();
    };
    const hooks = this.client.hooks;
    const done = hooks?.process ? Promise.resolve().then(() => hooks.process(a, this.workerId, run)) : run();
    done
      .catch((err) => {
        this.logger.error?.(`tasktide worker ${this.workerId}: the process hook failed: ${err?.message ?? err}`);
        return started ? attempt.done : run();
      })
      .then((outcome) => {
        if (outcome) this._finished(attempt, outcome); // none for an attempt given back
      });
  }

  _finished(attempt, outcome) {
    const id = attempt.lease.taskId;
    if (this._active.get(id) === attempt) this._active.delete(id);
    if (this._held.get(id)?.leaseToken === attempt.lease.leaseToken) this._held.delete(id);
    this.completed += 1;
    if (attempt.startedAt !== undefined) this._window.observe((performance.now() - attempt.startedAt) / 1000);
    this._outbox.push(outcome);
    if (this._active.size === 0 && this._idle) {
      this._idle.resolve();
      this._idle = null;
    }
    this._pump();
    // With nothing else running no other outcome can join this one, so it is written now; while
    // other attempts run, the outcomes that finish together go in one message on the next turn.
    if (this._active.size === 0) this._flush();
    else this._flushSoon();
  }

  _flushSoon() {
    if (this._flushQueued) return;
    this._flushQueued = true;
    setImmediate(() => {
      this._flushQueued = false;
      this._flush();
    });
  }

  /** Send every pending outcome, in batches, each returning its credit (none while draining). */
  _flush() {
    const s = this._session;
    if (!s || !s.welcomed || !s.open || s.halfClosed) return;
    while (this._outbox.length) {
      const outcomes = this._outbox.splice(0, this.maxBatch);
      for (const o of outcomes) {
        const key = `${o.taskId}/${o.leaseToken}`;
        const report = this._progressWaiting.get(key);
        if (report) {
          this._progressWaiting.delete(key); // an attempt's last word before its outcome
          this._write(s, { progress: report });
        }
      }
      const credit = this._stopping ? 0 : this._window.returned(outcomes.length);
      this._write(s, { outcomes: { outcomes, credit } });
      this._inDoubt.written(outcomes, this.leaseSeconds * 1000);
    }
  }

  _progress(lease, value, message) {
    this._progressWaiting.set(`${lease.taskId}/${lease.leaseToken}`, { lease, value, message });
    const s = this._session;
    if (s?.welcomed) this._writeProgress(s);
  }

  /** Write the progress reports waiting, while the stream takes them. */
  _writeProgress(s) {
    for (const [key, report] of this._progressWaiting) {
      if (s.blocked || !s.open || s.halfClosed) return;
      this._progressWaiting.delete(key);
      this._write(s, { progress: report });
    }
  }

  _cancel(taskId, grace) {
    const running = this._active.get(taskId);
    if (running) running.cancel(grace);
    else if (this._held.has(taskId)) this._cancelPending.add(taskId);
  }

  _dropReady() {
    for (const a of this._ready.splice(0)) this._held.delete(a.task.id);
    this._cancelPending.clear();
  }

  _whenIdle() {
    if (this._active.size === 0) return Promise.resolve();
    this._idle ??= deferred();
    return this._idle.promise;
  }

  async _drain(s) {
    const notStarted = this._ready.splice(0).map((a) => {
      this._held.delete(a.task.id);
      return { taskId: a.task.id, queue: a.task.spec.queue, leaseToken: a.leaseToken };
    });
    if (notStarted.length) this._write(s, { release: { leases: notStarted } });
    this._cancelPending.clear();
    await this._whenIdle();
    this._flush();
    if (!s.open) return;
    s.halfClosed = true;
    s.call.end();
    const timer = setTimeout(() => s.call.cancel(), CLOSE_WAIT_MS);
    s.call.on('status', () => clearTimeout(timer));
  }
}
