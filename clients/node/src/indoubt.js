// Outcomes written on a session during the last lease, sent again on the next session when that
// one is lost. The registry answers an outcome with nothing when all is well and records it after
// reading it, so a registry that dies or freezes after the write (its connection still open, the
// outcome in a socket buffer) loses it, and its task would wait for its lease to expire and run
// again. Sending one twice is harmless: an outcome whose lease has ended is refused as stale and
// nothing is recorded, and a task keeps its first final result. Older outcomes are not kept: their
// leases have expired, and their tasks are delivered again whatever is sent.

export const MAX_IN_DOUBT = 10_000; // outcomes kept at most, whatever the lease

const keyOf = (taskId, leaseToken) => `${taskId}/${leaseToken}`;

export class InDoubt {
  constructor(limit = MAX_IN_DOUBT) {
    this.limit = limit;
    this._kept = []; // [written at (ms), outcome], oldest first
    this._resent = new Set();
  }

  /** `outcomes` were written on a session. */
  written(outcomes, now = performance.now()) {
    for (const o of outcomes) this._kept.push([now, o]);
    if (this._kept.length > this.limit) this._kept.splice(0, this._kept.length - this.limit);
  }

  /**
   * The outcomes written within `horizonMs` (the lease) before `now`, to send on a new session.
   * They stay kept until the horizon passes: a session lost again sends them again.
   */
  take(horizonMs, now = performance.now()) {
    const first = this._kept.findIndex(([at]) => now - at <= horizonMs);
    this._kept.splice(0, first === -1 ? this._kept.length : first);
    const outcomes = this._kept.map(([, o]) => o);
    this._resent = new Set(outcomes.map((o) => keyOf(o.taskId, o.leaseToken)));
    return outcomes;
  }

  /** Whether a refusal concerns an outcome sent again (expected when the first was recorded). */
  wasResent(lease) {
    return this._resent.has(keyOf(lease.taskId, lease.leaseToken));
  }
}
