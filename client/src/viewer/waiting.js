/**
 * The frame requests a viewer waits for now: every request but prefetch's paced ones. No
 * Cornerstone here, so the room can listen before its viewer has loaded: while any is on its
 * way, the room asks the server to hold its other video back (`LiveClient.imagesFirst`), so the
 * image has the thin link.
 */

class Waiting extends EventTarget {
  /** Requests on their way. */
  count = 0;

  /**
   * Count `xhr` until it ends (loaded, failed or aborted). A `change` event when the count goes
   * from none to some, or back.
   * @param {XMLHttpRequest} xhr
   */
  add(xhr) {
    this.count += 1;
    if (this.count === 1) this.dispatchEvent(new Event('change'));
    xhr.addEventListener('loadend', () => {
      this.count -= 1;
      if (this.count === 0) this.dispatchEvent(new Event('change'));
    }, { once: true });
  }
}

export const waitedFrames = new Waiting();
