// Client: submits tasks by name and reads their results (Scheduler and Results services).

import { NotFound, TaskTimeout, translate, unwrap } from './errors.js';
import { FINAL_STATES, encodePayload, ms, stateName, stub, toEvent, toResult } from './protocol.js';

export const DEFAULT_ADDRESS = '127.0.0.1:50051';

// The server holds one Wait call at most this long; the client loops for longer timeouts.
const WAIT_SLICE = 30;

/** Addresses from the arguments, else TASKTIDE_* variables, else the default. */
export function resolveAddresses(address, options = {}, env = process.env) {
  const main = address || env.TASKTIDE_ADDRESS || DEFAULT_ADDRESS;
  return {
    scheduler: options.schedulerAddress || env.TASKTIDE_SCHEDULER_ADDRESS || main,
    registry: options.registryAddress || env.TASKTIDE_REGISTRY_ADDRESS || main,
    results: options.resultsAddress || env.TASKTIDE_RESULTS_ADDRESS || main,
  };
}

function unary(service, address, method, request, deadlineSeconds) {
  const options = deadlineSeconds ? { deadline: Date.now() + deadlineSeconds * 1000 } : {};
  return new Promise((resolve, reject) => {
    service[method](request, options, (err, response) => {
      if (err) reject(translate(err, address));
      else resolve(response);
    });
  });
}

function dateMs(value) {
  return value instanceof Date ? value.getTime() : Math.round(Number(value));
}

/**
 * A TaskSpec message for `name`. Options: kwargs, queue, priority, countdown (seconds), eta (Date or
 * Unix ms), expires (seconds from now, or a Date), idempotencyKey, maxRetries, retryBackoff,
 * retryBackoffMax, retryJitter, softTimeLimit, timeLimit, rateLimit, headers.
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
  };
  if (o.eta !== undefined && o.eta !== null) spec.etaMs = String(dateMs(o.eta));
  if (o.expires !== undefined && o.expires !== null) {
    const at = o.expires instanceof Date ? o.expires.getTime() : Date.now() + Number(o.expires) * 1000;
    spec.expiresMs = String(Math.round(at));
  }
  if (o.maxRetries !== undefined) {
    spec.retry = {
      maxRetries: o.maxRetries,
      backoffBase: o.retryBackoff ?? 1,
      backoffMax: o.retryBackoffMax ?? 600,
      jitter: o.retryJitter ?? true,
    };
  }
  return spec;
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
  get({ timeout } = {}) {
    return this.client.result(this.id, { timeout });
  }

  wait({ timeout } = {}) {
    return this.client.wait(this.id, { timeout });
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
   * `address`: host:port of the platform (default TASKTIDE_ADDRESS, then 127.0.0.1:50051).
   * Options: schedulerAddress, registryAddress, resultsAddress (default TASKTIDE_*_ADDRESS).
   */
  constructor(address, options = {}) {
    this.addresses = resolveAddresses(address, options);
    this._scheduler = stub('Scheduler', this.addresses.scheduler);
    this._results = stub('Results', this.addresses.results);
    this._registry = null; // opened by the first Worker
  }

  /** The Registry service stub, for the worker runtime. */
  registry() {
    if (this._registry === null) this._registry = stub('Registry', this.addresses.registry);
    return this._registry;
  }

  close() {
    for (const s of [this._scheduler, this._results, this._registry]) s?.close();
  }

  _call(service, method, request, deadline) {
    const [svc, address] =
      service === 'results'
        ? [this._results, this.addresses.results]
        : service === 'registry'
          ? [this.registry(), this.addresses.registry]
          : [this._scheduler, this.addresses.scheduler];
    return unary(svc, address, method, request, deadline);
  }

  async submit(name, args = [], options = {}) {
    const spec = buildSpec(name, args, options);
    const resp = await this._call('scheduler', 'Submit', { spec });
    return new TaskHandle(this, resp.taskId, name, Boolean(resp.existing));
  }

  /** Many tasks in one call: `tasks` is a list of {name, args, ...options}. */
  async submitBatch(tasks) {
    const specs = tasks.map(({ name, args, ...options }) => buildSpec(name, args ?? [], options));
    const resp = await this._call('scheduler', 'SubmitBatch', { specs });
    return resp.results.map((r, i) => new TaskHandle(this, r.taskId, specs[i].name, Boolean(r.existing)));
  }

  /** Results of many tasks at once, as plain objects (see toResult). */
  async fetch(taskIds) {
    const resp = await this._call('results', 'Get', { taskIds });
    return resp.results.map(toResult);
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

  /** Why the task is not running (yet): {state, reason, message, etaMs, ahead}. */
  async explain(taskId) {
    const e = await this._call('scheduler', 'Explain', { taskId });
    return {
      taskId: e.taskId,
      state: stateName(e.state),
      reason: String(e.reason).replace(/^WAIT_REASON_/, ''),
      message: e.message,
      etaMs: ms(e.etaMs),
      ahead: Number(e.ahead),
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

  /** Wait for a final state; resolves to the result object, rejects with TaskTimeout. Seconds. */
  async wait(taskId, { timeout } = {}) {
    const deadline = timeout === undefined || timeout === null ? null : Date.now() + timeout * 1000;
    for (;;) {
      const left = deadline === null ? WAIT_SLICE : Math.min(WAIT_SLICE, (deadline - Date.now()) / 1000);
      if (left <= 0) throw new TaskTimeout(taskId, timeout);
      const res = toResult(await this._call('results', 'Wait', { taskId, timeout: left }, left + 5));
      if (FINAL_STATES.has(res.state)) return res;
    }
  }

  /** The task's return value, or a rejection with TaskFailed carrying the remote error. */
  async result(taskId, { timeout } = {}) {
    return unwrap(await this.wait(taskId, { timeout }));
  }

  /**
   * Events of the given tasks, as an async iterator of plain objects (see toEvent). Options:
   * untilFinal (default true), finalOnly, cursors ({taskId: cursor} to resume after).
   */
  async *watch(taskIds, { untilFinal = true, finalOnly = false, cursors = {} } = {}) {
    const call = this._results.Watch({ taskIds, untilFinal, finalOnly, cursors });
    call.on('error', () => {}); // surfaced by the iterator below
    try {
      for await (const event of call) yield toEvent(event);
    } catch (err) {
      throw translate(err, this.addresses.results);
    } finally {
      call.cancel();
    }
  }
}
