// Client: submits tasks by name and reads their results (Scheduler and Results services).

import { abortable, connectionSettings } from './connection.js';
import { NotFound, TaskTimeout, translate, unwrap } from './errors.js';
import { Follower, UseWait } from './follower.js';
import { FINAL_STATES, ms, stateName, stub, toEvent, toResult } from './protocol.js';
import { buildSpec } from './spec.js';
import { StreamSubmitter, streamUnsupported, submitTransport } from './submitter.js';
import { channelTarget } from './targets.js';

export { buildSpec };

export const DEFAULT_ADDRESS = '127.0.0.1:50051';

// The server holds one Wait call at most this long; the client loops for longer timeouts.
const WAIT_SLICE = 30;
const TIMED_OUT = Symbol('timed out');

/** Addresses from the arguments, else TASKTIDE_* variables, else the default. */
export function resolveAddresses(address, options = {}, env = process.env) {
  const main = address || env.TASKTIDE_ADDRESS || DEFAULT_ADDRESS;
  return {
    scheduler: options.schedulerAddress || env.TASKTIDE_SCHEDULER_ADDRESS || main,
    registry: options.registryAddress || env.TASKTIDE_REGISTRY_ADDRESS || main,
    results: options.resultsAddress || env.TASKTIDE_RESULTS_ADDRESS || main,
  };
}

function unary(service, address, method, request, { deadline, signal } = {}) {
  const options = deadline ? { deadline: Date.now() + deadline * 1000 } : {};
  return abortable(signal, (done) => service[method](request, options, done)).catch((err) => {
    throw err === signal?.reason ? err : translate(err, address);
  });
}

/** A submitted task. */
export class TaskHandle {
  constructor(client, id, name, existing = false) {
    this.client = client;
    this.id = id;
    this.name = name;
    this.existing = existing; // the idempotency key named a task that already existed
  }

  /** The result; rejects with TaskFailed (or a subclass) carrying the remote error. */
  get(options = {}) {
    return this.client.result(this.id, options);
  }

  wait(options = {}) {
    return this.client.wait(this.id, options);
  }

  status() {
    return this.client.status(this.id);
  }

  cancel() {
    return this.client.cancel(this.id);
  }

  explain() {
    return this.client.explain(this.id);
  }

  watch(options = {}) {
    return this.client.watch([this.id], options);
  }
}

export class Client {
  /**
   * `address`: the platform's address (default TASKTIDE_ADDRESS, then 127.0.0.1:50051): host:port,
   * unix:/path, a resolver target such as dns:///tasktide.ns.svc:50051, or a comma list of
   * replicas (10.0.0.5:50051,10.0.0.6:50051 or unix:/run/a.sock,unix:/run/b.sock), balanced round
   * robin over the replicas that are up; a list that cannot be used throws a TypeError (targets.js).
   * Options: schedulerAddress, registryAddress, resultsAddress (default TASKTIDE_*_ADDRESS); the
   * connection options of connection.js (credentials, tls, callCredentials, token, channelOptions,
   * interceptors); hooks (for example TracingHooks from '@tasktide/client/opentelemetry');
   * submitTransport: how submit() sends a task, 'stream' (default: one message on a SubmitStream
   * shared by every caller, see submitter.js) or 'unary' (a Submit call per task); default
   * TASKTIDE_SUBMIT_TRANSPORT.
   */
  constructor(address, options = {}) {
    this.addresses = resolveAddresses(address, options);
    channelTarget(this.addresses.registry); // a list it cannot use fails here, not at the first Worker
    this.hooks = options.hooks ?? null;
    this._settings = connectionSettings(options);
    this._scheduler = stub('Scheduler', this.addresses.scheduler, this._settings);
    this._results = stub('Results', this.addresses.results, this._settings);
    this._submitter =
      submitTransport(options.submitTransport) === 'stream'
        ? new StreamSubmitter(this._scheduler, this.addresses.scheduler)
        : null;
    this._registry = null; // opened by the first Worker
    this._follower = new Follower(this._results, this.addresses.results); // wait() and result()
  }

  /** The Registry service stub, for the worker runtime. */
  registry() {
    if (this._registry === null) this._registry = stub('Registry', this.addresses.registry, this._settings);
    return this._registry;
  }

  close() {
    this._follower.close();
    this._submitter?.close();
    for (const s of [this._scheduler, this._results, this._registry]) s?.close();
  }

  _call(service, method, request, options) {
    const [svc, address] =
      service === 'results'
        ? [this._results, this.addresses.results]
        : service === 'registry'
          ? [this.registry(), this.addresses.registry]
          : [this._scheduler, this.addresses.scheduler];
    return unary(svc, address, method, request, options);
  }

  /** Submit (or SubmitBatch) through the hooks' send, which may write trace context into the specs. */
  _send(specs, batch, signal) {
    const call = () =>
      batch
        ? this._call('scheduler', 'SubmitBatch', { specs }, { signal })
        : this._submitOne(specs[0], signal);
    return this.hooks?.send ? this.hooks.send(specs, batch, call) : call();
  }

  /** One task by the client's transport (see the constructor's submitTransport). */
  async _submitOne(spec, signal) {
    const submitter = this._submitter;
    if (submitter === null || submitter.unsupported) {
      return this._call('scheduler', 'Submit', { spec }, { signal });
    }
    try {
      return await submitter.submit(spec, signal);
    } catch (err) {
      if (!streamUnsupported(err)) throw err;
      // A scheduler without SubmitStream refused the stream itself, so the task was not taken:
      // it and every later one go by Submit calls.
      submitter.unsupported = true;
      return this._call('scheduler', 'Submit', { spec }, { signal });
    }
  }

  /** Submit one task by name; options as in buildSpec (spec.js), and `signal` (an AbortSignal). */
  async submit(name, args = [], options = {}) {
    const { signal, ...specOptions } = options;
    const spec = buildSpec(name, args, specOptions);
    const resp = await this._send([spec], false, signal);
    return new TaskHandle(this, resp.taskId, name, Boolean(resp.existing));
  }

  /** Many tasks in one call: `tasks` is a list of {name, args, ...options}; options: `signal`. */
  async submitBatch(tasks, { signal } = {}) {
    const specs = tasks.map(({ name, args, ...options }) => buildSpec(name, args ?? [], options));
    const resp = await this._send(specs, true, signal);
    return resp.results.map((r, i) => new TaskHandle(this, r.taskId, specs[i].name, Boolean(r.existing)));
  }

  /** Results of many tasks at once, as plain objects (see toResult). */
  async fetch(taskIds, { signal } = {}) {
    const resp = await this._call('results', 'Get', { taskIds }, { signal });
    return resp.results.map(toResult);
  }

  /**
   * Tasks that changed within the server's index retention, the latest changed first: one page.
   * Options: states (names such as 'FAILED'), name, queue, workerId, errorType, sinceMs, untilMs,
   * limit (at most 1000), cursor (the nextCursor of the previous page), counts, signal.
   * Resolves to {tasks, nextCursor ('' at the end), countsByState, countsByName}.
   */
  async listTasks(options = {}) {
    const { signal, states = [], sinceMs = 0, untilMs = 0, ...filters } = options;
    const request = {
      ...filters,
      states: [].concat(states).map((s) => `TASK_STATE_${String(s).toUpperCase()}`),
      sinceMs: String(sinceMs),
      untilMs: String(untilMs),
    };
    const resp = await this._call('results', 'ListTasks', request, { signal });
    const counts = (m) => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, Number(v)]));
    return {
      tasks: resp.tasks.map(toResult),
      nextCursor: resp.nextCursor,
      countsByState: Object.fromEntries(
        Object.entries(counts(resp.countsByState)).map(([k, v]) => [stateName(k), v]),
      ),
      countsByName: counts(resp.countsByName),
    };
  }

  /** The task's state name ('QUEUED', 'SUCCEEDED'...); 'UNKNOWN' for an id the platform does not know. */
  async status(taskId) {
    const [res] = await this.fetch([taskId]);
    if (res.found) return res.state;
    try {
      return (await this.getTask(taskId)).state; // not dispatched yet: its queue knows it
    } catch (err) {
      if (err instanceof NotFound) return 'UNKNOWN';
      throw err;
    }
  }

  async getTask(taskId) {
    const t = await this._call('scheduler', 'GetTask', { taskId });
    const spec = t.spec ?? {};
    return {
      id: t.id,
      name: spec.name,
      queue: spec.queue,
      state: stateName(t.state),
      attempt: t.attempt,
      createdMs: ms(t.createdMs),
    };
  }

  /** Cancel a delayed, queued or running task; resolves to its state name after the request. */
  async cancel(taskId) {
    return stateName((await this._call('scheduler', 'Cancel', { taskId })).state);
  }

  /** Why the task is not running (yet): {state, reason, message, etaMs, ahead, cancelAsked}. */
  async explain(taskId) {
    const e = await this._call('scheduler', 'Explain', { taskId });
    return {
      taskId: e.taskId,
      state: stateName(e.state),
      reason: String(e.reason).replace(/^WAIT_REASON_/, ''),
      message: e.message,
      etaMs: ms(e.etaMs),
      ahead: Number(e.ahead),
      cancelAsked: Boolean(e.cancelAsked),
    };
  }

  /** Per queue: {queue, ready, leased, dead, paused, consumers}. */
  async queueStats() {
    const resp = await this._call('registry', 'QueueStats', {});
    return resp.queues.map((q) => ({
      queue: q.queue,
      ready: Number(q.ready),
      leased: Number(q.leased),
      dead: Number(q.dead),
      paused: Boolean(q.paused),
      consumers: q.consumers,
    }));
  }

  /** The connected workers: {workerId, sessionId, hostname, pid, language, queues, concurrency}. */
  async workers() {
    const resp = await this._call('registry', 'ListWorkers', {});
    return resp.workers.map((w) => ({
      workerId: w.workerId,
      sessionId: w.sessionId,
      hostname: w.hostname,
      pid: w.pid,
      language: w.language,
      queues: [...w.queues],
      concurrency: w.concurrency,
      resizable: Boolean(w.resizable),
    }));
  }

  /**
   * Stop a worker gracefully (any language's): it takes nothing new, gives back the tasks it has
   * not started, finishes those running and ends. Resolves to how many of its sessions were asked;
   * rejects with NotFound when no worker of that id is connected.
   */
  async drainWorker(workerId) {
    return (await this._call('registry', 'DrainWorker', { workerId })).sessions;
  }

  /**
   * Grow or shrink a worker's pool while it runs: from now on it runs at most `concurrency`
   * (1..1024) tasks at a time, and tasks running beyond that finish first. Resolves to how many of
   * its sessions were asked; rejects with NotFound when no worker of that id is connected.
   */
  async resizeWorker(workerId, concurrency) {
    if (!(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 1024)) {
      throw new RangeError(`a concurrency is 1..1024, not ${concurrency}`);
    }
    return (await this._call('registry', 'ResizeWorker', { workerId, concurrency })).sessions;
  }

  /**
   * Wait for a final state; resolves to the result object, rejects with TaskTimeout. `timeout` in
   * seconds (none: wait for ever; 0: look once without waiting); `signal` aborts the wait.
   */
  async wait(taskId, { timeout, signal } = {}) {
    const deadline = timeout === undefined || timeout === null ? null : Date.now() + timeout * 1000;
    if (timeout !== 0 && this._follower.accepts(taskId)) {
      const res = await this._followed(taskId, deadline, signal);
      if (res !== null) return res;
    }
    for (;;) {
      const left = deadline === null ? WAIT_SLICE : Math.min(WAIT_SLICE, (deadline - Date.now()) / 1000);
      if (left <= 0) {
        // Time is up (or was 0): one look without waiting, so a finished task is still seen.
        const [res] = await this.fetch([taskId], { signal });
        if (FINAL_STATES.has(res.state)) return res;
        throw new TaskTimeout(taskId, timeout);
      }
      const request = { taskId, timeout: left };
      const res = toResult(await this._call('results', 'Wait', request, { deadline: left + 5, signal }));
      if (FINAL_STATES.has(res.state)) return res;
    }
  }

  /**
   * The final result of `taskId` from the Follow stream (follower.js); null when the deadline passed
   * first or the stream cannot serve it, and wait() goes on with a last look or Wait calls.
   */
  async _followed(taskId, deadline, signal) {
    signal?.throwIfAborted();
    const handle = {};
    const answered = this._follower.wait(taskId, handle);
    answered.catch(() => {}); // seen below unless the deadline or the signal came first
    const stops = [];
    const timedOut =
      deadline === null
        ? null
        : new Promise((resolve) => {
            const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), TIMED_OUT);
            stops.push(() => clearTimeout(timer));
          });
    const aborted = signal
      ? new Promise((_, reject) => {
          const onAbort = () => reject(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
          stops.push(() => signal.removeEventListener('abort', onAbort));
        })
      : null;
    try {
      const got = await Promise.race([answered, timedOut, aborted].filter((p) => p !== null));
      return got === TIMED_OUT ? null : toResult(got);
    } catch (err) {
      if (err instanceof UseWait) return null;
      throw err;
    } finally {
      for (const stop of stops) stop();
      handle.stop?.();
    }
  }

  /** The task's return value, or a rejection with TaskFailed carrying the remote error. */
  async result(taskId, options = {}) {
    return unwrap(await this.wait(taskId, options));
  }

  /**
   * Events of the given tasks, as an async iterator of plain objects (see toEvent). Options:
   * untilFinal (default true), finalOnly, cursors ({taskId: cursor} to resume after), signal (an
   * AbortSignal: the stream is cancelled and the iterator throws the signal's reason).
   */
  async *watch(taskIds, { untilFinal = true, finalOnly = false, cursors = {}, signal } = {}) {
    signal?.throwIfAborted();
    const call = this._results.Watch({ taskIds, untilFinal, finalOnly, cursors });
    call.on('error', () => {}); // surfaced by the iterator below
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const event of call) yield toEvent(event);
    } catch (err) {
      signal?.throwIfAborted();
      throw translate(err, this.addresses.results);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }
}
