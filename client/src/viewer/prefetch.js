/**
 * Prefetch: the images of the session's agenda fetched ahead into Cornerstone3D's cache, in the
 * order they will be shown (the series on screen first, from the slice shown outward; then the
 * rest of the current case; then the cases still to come), so an image the presenter opens is
 * already there when it is presented.
 *
 * Prefetch yields to live media: it is paced, with at most `inFlight` requests at once and a
 * byte rate read from `rate()` before every request (bits per second; default 600 kbit/s, a
 * conservative share of a thin link). Whoever knows the link (a bandwidth estimate) passes its
 * own `rate`; 0 pauses. The image a viewer shows is never held back: Cornerstone loads it at
 * interaction priority, outside this pacing; and an image the viewer needs while prefetch is
 * fetching it at its pace is promoted (`promote`): that request is aborted and the viewer's own
 * goes out unpaced. Otherwise the viewer would wait for the paced reply: at a thin link's
 * prefetch share (~90 kbit/s a request), a 200 KB slice the presenter scrolls to took 9-24 s.
 */

import { cache, imageLoader, Enums as csEnums } from '@cornerstonejs/core';
import { Pacer } from './pacer.js';
import { abortedTransfers, frameTransfers, pacedRequests, pacedTransfers, sentTransfers, startCornerstone } from './setup.js';

/** Bits per second prefetch takes when nobody says otherwise. */
export const DEFAULT_RATE = 600_000;
/** Where a browser may set another default, in kbit/s (support, tests, benchmarks). */
export const RATE_SETTING = 'eboard.prefetch.kbps';
const IN_FLIGHT = 2;
// Images wanted before the plan (thumbnails) at most: more are fetched in their turn.
const MAX_WANTED = 64;
// A new image's size before any is known: a 512² CT slice as JPEG-LS lossless.
const FIRST_GUESS = 200_000;

/**
 * One series to fetch, as the plan lists it.
 * @typedef {object} PlannedSeries
 * @property {string} alias
 * @property {number} from the image to start from (the others follow outward from it)
 * @property {() => Promise<string[]>} imageIds its images in canonical order (loads metadata)
 */

/**
 * @typedef {object} PrefetchOptions
 * @property {() => Promise<PlannedSeries[]>} plan what to fetch, in the order it will be shown;
 *   asked again after `replan()`
 * @property {() => number} [rate] bits per second prefetch may use now
 * @property {number} [inFlight] requests at once
 * @property {(imageId: string, pace: number) => Promise<number>} [load] fetch one image into
 *   the cache, its reply paced at `pace` bit/s; resolves with the bytes it took (default:
 *   Cornerstone's loader, at prefetch priority)
 * @property {(imageId: string) => boolean} [cached] whether an image is cached or on its way
 * @property {() => number} [now] a clock in ms (tests)
 * @property {(ms: number, signal: AbortSignal) => Promise<void>} [wait] (tests)
 */

/**
 * What prefetch has done: for tests, benchmarks and support.
 * @typedef {object} PrefetchProgress
 * @property {number} planned images in the plan
 * @property {number} fetched images fetched by prefetch
 * @property {number} skipped images already cached or on their way when their turn came
 * @property {number} failed
 * @property {number} promoted images a viewer needed while prefetch fetched them at its pace
 * @property {number} bytes received by prefetch
 * @property {number} inFlight
 * @property {boolean} done every planned image is cached
 * @property {string[]} order the series aliases in the order of the current plan
 */

/**
 * Start prefetching; `stop()` ends it (requests on their way complete).
 * @param {PrefetchOptions} options
 */
export function startPrefetch(options) {
  return new Prefetch(options);
}

/**
 * The images of a series in the order to fetch them: `from`, then outward, nearest first.
 * @param {number} length
 * @param {number} from
 */
export function outward(length, from) {
  const start = Math.min(length - 1, Math.max(0, Math.round(from) || 0));
  /** @type {number[]} */
  const out = length > 0 ? [start] : [];
  for (let step = 1; out.length < length; step += 1) {
    if (start + step < length) out.push(start + step);
    if (start - step >= 0) out.push(start - step);
  }
  return out;
}

export class Prefetch {
  /** @param {PrefetchOptions} options */
  constructor(options) {
    this._plan = options.plan;
    this._rate = options.rate ?? defaultRate;
    this._inFlight = options.inFlight ?? IN_FLIGHT;
    this._pacer = new Pacer({
      rate: this._rate,
      inFlight: this._inFlight,
      guess: FIRST_GUESS,
      now: options.now ?? (() => performance.now()),
      wait: options.wait ?? delay,
    });
    this._load = options.load ?? cornerstoneLoad;
    // Cornerstone first: starting it clears the image metadata a plan's series register.
    this._ready = options.load ? Promise.resolve() : startCornerstone();
    this._cached = options.cached ?? ((imageId) => Boolean(cache.getImageLoadObject(imageId)));
    this._life = new AbortController();
    /** @type {Set<Promise<void>>} requests on their way, with their progress counted */
    this._tasks = new Set();
    /** @type {Map<string, {settled: Promise<void>, promoted: boolean}>} those by image id */
    this._loading = new Map();
    /** @type {Set<string>} images a viewer took over (`promote`): its request fetches them */
    this._promoted = new Set();
    /** @type {Map<string, () => void>} images wanted before the plan (`want`), and who waits */
    this._wanted = new Map();
    /** @type {{alias: string, index: number} | null} */
    this._focus = null;
    this._dirty = true;
    /** @type {(() => void) | null} wakes the loop when it waits for a change */
    this._wake = null;
    /** @type {PrefetchProgress} */
    this.progress = { planned: 0, fetched: 0, skipped: 0, failed: 0, promoted: 0, bytes: 0, inFlight: 0, done: false, order: [] };
    this.finished = this._loop().catch((error) => console.warn('Prefetch stopped: %s', error));
  }

  /** Stop: no new request goes out. */
  stop() {
    this._life.abort();
    this._wake?.();
    for (const done of this._wanted.values()) done();
    this._wanted.clear();
  }

  /**
   * Fetch `imageId` before the rest of the plan, at prefetch's pace: a series' thumbnail, which
   * fetched on its own, unpaced, would take a thin link from the image being presented (two
   * 200 KB thumbnails made the presented image wait 2-4 s over the emulated link). Resolves
   * once it is loaded or failed, or prefetch stopped; the caller then reads it from the cache.
   * @param {string} imageId
   * @returns {Promise<void>}
   */
  want(imageId) {
    const settled = cacheSettled(imageId);
    if (settled) return settled;
    if (this._life.signal.aborted || this._wanted.size >= MAX_WANTED) return Promise.resolve();
    return new Promise((resolve) => {
      const before = this._wanted.get(imageId);
      this._wanted.set(imageId, () => { before?.(); resolve(); });
      this.replan();
    });
  }

  /** The agenda or the case under discussion changed: ask the plan again. */
  replan() {
    this._dirty = true;
    this._wake?.();
  }

  /**
   * A viewer shows image `index` of series `alias`: that series first, from there outward.
   * @param {string} alias
   * @param {number} index
   */
  focus(alias, index) {
    if (this._focus?.alias === alias && this._focus.index === index) return;
    this._focus = { alias, index };
    this.replan();
  }

  /**
   * A viewer needs `imageId` now: if prefetch is fetching it at its pace, stop that (a request
   * not sent yet goes out unpaced; one on its way is aborted) and resolve once the cache has
   * forgotten the aborted load, so the viewer's own request is the one that fetches it.
   * @param {string} imageId
   * @returns {Promise<void>}
   */
  promote(imageId) {
    // Whatever happens to this request, prefetch does not ask for the image again.
    this._promoted.add(imageId);
    const loading = this._loading.get(imageId);
    if (!loading) return Promise.resolve();
    pacedRequests.delete(imageId);
    const xhr = pacedTransfers.get(imageId);
    if (!xhr) return Promise.resolve();
    pacedTransfers.delete(imageId);
    loading.promoted = true;
    abortedTransfers.add(xhr);
    // Aborted before it went out, it would end silently and its load never settle (the image
    // loader asks for its headers first, then sends): abort it as it goes out.
    if (sentTransfers.has(xhr)) xhr.abort();
    else xhr.addEventListener('loadstart', () => xhr.abort(), { once: true });
    // A task later than the load's own settling: the cache drops a failed load in a handler of
    // its own, which must not run after the viewer's new load is in the cache.
    return loading.settled.then(() => new Promise((resolve) => setTimeout(resolve, 0)));
  }

  async _loop() {
    const signal = this._life.signal;
    await this._ready;
    while (!signal.aborted) {
      this._dirty = false;
      /** @type {PlannedSeries[]} */
      let plan = [];
      try {
        plan = await this._plan();
      } catch (error) {
        console.warn('Prefetch: no plan: %s', error); // tried again at the next replan
      }
      const planned = this._ordered(plan);
      this.progress.order = planned.map((p) => p.alias);
      const complete = await this._fetchAll(planned, signal);
      if (signal.aborted) break;
      if (complete && !this._dirty) {
        await Promise.all(this._tasks);
        this.progress.done = !this._dirty && this.progress.inFlight === 0;
        // Idle until something changes (a new case, a new focus).
        if (!this._dirty) await new Promise((resolve) => { this._wake = () => resolve(undefined); });
        this._wake = null;
        this.progress.done = false;
      }
    }
  }

  /**
   * The plan with the focused series first, starting at the focused image.
   * @param {PlannedSeries[]} planned
   */
  _ordered(planned) {
    const focus = this._focus;
    if (!focus) return planned;
    const hit = planned.find((p) => p.alias === focus.alias);
    if (!hit) return planned;
    return [{ ...hit, from: focus.index }, ...planned.filter((p) => p !== hit)];
  }

  /**
   * @param {PlannedSeries[]} planned
   * @param {AbortSignal} signal
   * @returns {Promise<boolean>} whether it went through all of it (no replan, no stop)
   */
  async _fetchAll(planned, signal) {
    for (const [imageId, done] of this._wanted) {
      if (signal.aborted || this._dirty) return false;
      if (this._cached(imageId)) {
        this._wanted.delete(imageId);
        void (cacheSettled(imageId) ?? Promise.resolve()).then(done); // on its way or loaded
        continue;
      }
      if (!(await this._pacer.ready(() => signal.aborted || this._dirty, signal))) return false;
      this._wanted.delete(imageId);
      this._start(imageId, done);
    }
    let total = 0;
    this.progress.planned = 0;
    for (const series of planned) {
      /** @type {string[]} */
      let ids;
      try {
        ids = await series.imageIds();
      } catch (error) {
        console.warn('Prefetch(%s) no metadata: %s', series.alias, error);
        continue;
      }
      total += ids.length;
      this.progress.planned = total;
      for (const index of outward(ids.length, series.from)) {
        if (signal.aborted || this._dirty) return false;
        const imageId = ids[index];
        if (this._cached(imageId) || this._promoted.has(imageId)) {
          this.progress.skipped += 1;
          continue;
        }
        if (!(await this._pacer.ready(() => signal.aborted || this._dirty, signal))) return false;
        this._start(imageId);
      }
    }
    return true;
  }

  /**
   * @param {string} imageId
   * @param {() => void} [done] called once the request settled
   */
  _start(imageId, done) {
    this.progress.inFlight += 1;
    // Each reply paced at its share of the rate, so the replies in flight add up to it: a
    // steady flow beside the call's media, not bursts at twice the rate that the link's
    // estimate would rise and fall with (a 1.3 Mbit/s estimate of 2 Mbit/s sawed so).
    const pace = Math.max(0, this._rate()) / this._inFlight;
    const loading = { settled: Promise.resolve(), promoted: false };
    const task = this._pacer.start(() => this._load(imageId, pace)).then((bytes) => {
      this.progress.fetched += 1;
      this.progress.bytes += bytes;
    }, (error) => {
      if (loading.promoted) {
        this.progress.promoted += 1;
        return;
      }
      this.progress.failed += 1;
      console.warn('Prefetch: image %s not fetched: %s', imageId, error);
    }).finally(() => {
      this.progress.inFlight -= 1;
      this._tasks.delete(task);
      if (this._loading.get(imageId) === loading) this._loading.delete(imageId);
      done?.();
    });
    loading.settled = task;
    this._loading.set(imageId, loading);
    this._tasks.add(task);
  }
}

/**
 * When the cache's load of `imageId` (on its way or done) settles, failed or not; null when the
 * cache has none.
 * @param {string} imageId
 * @returns {Promise<void> | null}
 */
function cacheSettled(imageId) {
  const pending = cache.getImageLoadObject(imageId)?.promise;
  return pending ? pending.then(() => {}, () => {}) : null;
}

/** The rate a browser was told to use (`localStorage[RATE_SETTING]`, kbit/s), else the default. */
export function defaultRate() {
  return configuredRate() ?? DEFAULT_RATE;
}

/**
 * The rate set in this browser (`localStorage[RATE_SETTING]`, kbit/s), or null when none is.
 * @returns {number | null}
 */
export function configuredRate() {
  try {
    const kbps = Number(window.localStorage.getItem(RATE_SETTING));
    return kbps > 0 ? kbps * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * @param {number} ms
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
function delay(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Fetch one image through Cornerstone's loader into its cache, at prefetch priority; the bytes
 * its request received. The server paces the reply at `pace` bit/s (none when 0).
 * @param {string} imageId
 * @param {number} pace
 * @returns {Promise<number>}
 */
async function cornerstoneLoad(imageId, pace) {
  let bytes = 0;
  const heard = (/** @type {Event} */ event) => {
    const detail = /** @type {CustomEvent<{imageId: string, bytes: number}>} */ (event).detail;
    if (detail.imageId === imageId) bytes = detail.bytes;
  };
  frameTransfers.addEventListener('frame', heard);
  if (pace > 0) pacedRequests.set(imageId, pace);
  try {
    await imageLoader.loadAndCacheImage(imageId, { priority: 5, requestType: csEnums.RequestType.Prefetch });
  } finally {
    frameTransfers.removeEventListener('frame', heard);
    pacedRequests.delete(imageId);
  }
  return bytes;
}
