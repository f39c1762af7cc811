// Outcomes written on a session during the last lease, sent again on the next session when that
// one is lost. The registry answers an outcome with nothing when all is well and records it after
// reading it, so a registry that dies or freezes after the write (its connection still open, the
// outcome in a socket buffer) loses it, and its task would wait for its lease to expire and run
// again. Sending one twice is harmless: an outcome whose lease has ended is refused as stale and
// nothing is recorded, and a task keeps its first final result. Older outcomes are not kept: their
// leases have expired, and their tasks are delivered again whatever is sent.

export const MAX_IN_DOUBT = 10_000; // outcomes kept at most, whatever the lease

const keyOf = (taskId, leaseToken) => `${taskId}/${leaseToken}`;

// Each outcome written costs O(1): the oldest are let go from the front of `_kept` by moving
// `_head`, and the array is compacted only once most of it lies before `_head`.
export class InDoubt {
  constructor(limit = MAX_IN_DOUBT) {
    this.limit = limit;
    this._kept = []; // [written at (ms), outcome]; _kept[_head..] are kept, oldest first
    this._head = 0;
    this._resent = new Set();
  }

  /** `outcomes` were written on a session whose lease is `horizonMs`: those older are let go. */
  written(outcomes, horizonMs, now = performance.now()) {
    for (const o of outcomes) this._kept.push([now, o]);
    this._forget(horizonMs, now);
  }

  /**
   * The outcomes written within `horizonMs` (the lease) before `now`, to send on a new session.
   * They stay kept until the horizon passes: a session lost again sends them again.
   */
  take(horizonMs, now = performance.now()) {
    this._forget(horizonMs, now);
    const outcomes = this._kept.slice(this._head).map(([, o]) => o);
    this._resent = new Set(outcomes.map((o) => keyOf(o.taskId, o.leaseToken)));
    return outcomes;
  }

  /** The count of outcomes kept. */
  get size() {
    return this._kept.length - this._head;
  }

  /** Whether a refusal concerns an outcome sent again (expected when the first was recorded). */
  wasResent(lease) {
    return this._resent.has(keyOf(lease.taskId, lease.leaseToken));
  }

  _forget(horizonMs, now) {
    const kept = this._kept;
    const stale = () => kept.length - this._head > this.limit || now - kept[this._head][0] > horizonMs;
    while (this._head < kept.length && stale()) {
      kept[this._head++] = undefined; // the outcome's memory goes with it
    }
    if (this._head > 0 && this._head >= kept.length / 2) {
      this._kept = kept.slice(this._head);
      this._head = 0;
    }
  }
}
