// How many assignments a worker asks the registry to keep it supplied with.
//
// The window is the concurrency plus a prefetch. A fixed prefetch (the `prefetch` option) stays as
// given. By default the window starts at three tasks per slot and follows the length of the tasks:
// enough for about BUFFER_SECONDS of work per slot, between MIN_PER_SLOT and MAX_PER_SLOT per slot.
// Short tasks then travel in larger batches (fewer messages and Redis round trips per task); long
// tasks keep a small window, so tasks do not wait behind them in one worker while another is free.
// The window moves toward its target as outcomes return credit: it grows by granting more than
// comes back, and shrinks by granting less.

export const BUFFER_SECONDS = 0.05;
export const MIN_PER_SLOT = 3;
export const MAX_PER_SLOT = 32;
const WEIGHT = 0.05; // of each new duration in the moving average

export class CreditWindow {
  constructor(concurrency, prefetch = 0) {
    this.concurrency = concurrency;
    this.fixed = prefetch;
    this.window = 0;
    this.average = null; // seconds per task, moving average
  }

  /** The window aimed at now. */
  target() {
    if (this.fixed) return this.concurrency + this.fixed;
    let perSlot = MIN_PER_SLOT;
    if (this.average !== null) {
      const fits = Math.floor(BUFFER_SECONDS / Math.max(this.average, 1e-6));
      perSlot = Math.max(MIN_PER_SLOT, Math.min(MAX_PER_SLOT, fits));
    }
    return this.concurrency * (1 + perSlot);
  }

  /**
   * The credit of a new session, for a worker with `inHand` assignments already (running, or with
   * outcomes still to send, each of which returns its credit when sent): what tops them up to the
   * target. With more in hand than the target, the window starts at what is in hand and nothing is
   * granted; outcomes then shrink it back, as in `returned`.
   */
  open(inHand = 0) {
    this.window = Math.max(this.target(), inHand);
    return this.window - inHand;
  }

  /**
   * The worker now runs `concurrency` at a time (a Resize): the credit to grant at once, which tops
   * the window up to its new target when it grew. A smaller target grants nothing: outcomes then
   * shrink the window, as in `returned`.
   */
  resize(concurrency) {
    this.concurrency = concurrency;
    const grant = Math.max(0, this.target() - this.window);
    this.window += grant;
    return grant;
  }

  /** A task ran for `seconds`. */
  observe(seconds) {
    this.average = this.average === null ? seconds : this.average + WEIGHT * (seconds - this.average);
  }

  /** `n` assignments are done (their outcomes are being sent): the credit to grant with them. */
  returned(n) {
    const grant = Math.max(0, n + this.target() - this.window);
    this.window += grant - n;
    return grant;
  }
}
