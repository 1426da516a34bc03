/**
 * Pacer: how fast prefetch may fetch. At most `inFlight` requests at once, and bytes under
 * `rate()` (bits per second, read before each request, so a bandwidth estimate can steer it; 0
 * pauses). A request's size is unknown until it ends: it is charged the size of the last one
 * when it starts and corrected when it ends, so requests go out evenly rather than in bursts.
 * No DOM and no Cornerstone: clocks and timers are injected in tests.
 */

// A burst is at most this much of the rate (seconds).
const BURST_SECONDS = 0.5;
const PAUSED_RETRY_MS = 500;

/**
 * @typedef {object} PacerOptions
 * @property {() => number} rate bits per second allowed now
 * @property {number} inFlight requests at once
 * @property {number} guess bytes a request is charged before any has ended
 * @property {() => number} now a clock in ms
 * @property {(ms: number, signal: AbortSignal) => Promise<void>} wait resolves after `ms`, or
 *   when `signal` aborts
 */

export class Pacer {
  /** @param {PacerOptions} options */
  constructor(options) {
    this._rate = options.rate;
    this._inFlight = options.inFlight;
    this._guess = options.guess;
    this._now = options.now;
    this._wait = options.wait;
    this._tokens = 0;
    this._refilled = this._now();
    /** @type {Set<Promise<void>>} */
    this.running = new Set();
  }

  /**
   * Resolves when one more request may go out (or `stop()` says to give up: then false).
   * @param {() => boolean} stop
   * @param {AbortSignal} signal
   * @returns {Promise<boolean>}
   */
  async ready(stop, signal) {
    while (!stop()) {
      if (this.running.size >= this._inFlight) {
        await Promise.race(this.running);
        continue;
      }
      const rate = Math.max(0, this._rate()) / 8; // bytes per second
      const now = this._now();
      this._tokens = Math.min(rate * BURST_SECONDS, this._tokens + (rate * (now - this._refilled)) / 1000);
      this._refilled = now;
      if (this._tokens >= 0 && rate > 0) return true;
      const ms = rate > 0 ? Math.ceil((-this._tokens / rate) * 1000) : PAUSED_RETRY_MS;
      // A request that ends meanwhile corrects its charge: look again then.
      const timer = new AbortController();
      const stopTimer = () => timer.abort();
      signal.addEventListener('abort', stopTimer, { once: true });
      try {
        await Promise.race([this._wait(Math.max(1, ms), timer.signal), ...this.running]);
      } finally {
        timer.abort();
        signal.removeEventListener('abort', stopTimer);
      }
    }
    return false;
  }

  /**
   * Start one request: `fetch` resolves with the bytes it took.
   * @param {() => Promise<number>} fetch
   * @returns {Promise<number>} its bytes (rejects as `fetch` does)
   */
  start(fetch) {
    const charged = this._guess;
    this._tokens -= charged;
    const result = fetch().then((bytes) => {
      this._tokens += charged - bytes;
      if (bytes > 0) this._guess = bytes;
      return bytes;
    }, (error) => {
      this._tokens += charged;
      throw error;
    });
    const settled = result.then(() => undefined, () => undefined).finally(() => this.running.delete(settled));
    this.running.add(settled);
    return result;
  }
}
