/**
 * The connection-quality indicator: a dot and a word from the media connections' round-trip
 * time and packet loss, or "reconnecting" while the live session is being re-established; and,
 * once the server has estimated it, what our link carries ("Link 1.2 Mbit/s"), marked low in
 * words and colour below LOW_LINK_KBPS, where the server starts reducing and pausing video.
 */

import { formatPercent, formatRate, label, t } from '../i18n/index.js';
import { h, mount } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */

/** Below this estimate a board's video no longer all fits (several cameras and a screen). */
export const LOW_LINK_KBPS = 500;

export class ConnectionIndicator {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   */
  constructor(live, signal) {
    this._live = live;
    this.el = h('p', { class: 'connection', 'data-testid': 'room-connection', role: 'status' });
    live.on('link', () => this.render(), signal);
    live.on('phase', () => this.render(), signal);
    live.on('quality', () => this.render(), signal);
    this.render();
  }

  render() {
    const { phase, link, quality } = this._live;
    const state = phase === 'live' ? link.quality : phase;
    this.el.dataset.quality = state;
    this.el.dataset.phase = phase;
    const details = phase === 'live' && link.rtt !== null
      ? t('room.link_details', { rtt: Math.round(link.rtt * 1000), loss: formatPercent(link.loss ?? 0) })
      : '';
    mount(this.el,
      h('span', { class: `dot quality-${state}`, 'aria-hidden': 'true' }),
      h('span', null, phase === 'live' ? t('room.connection', { quality: label('quality', link.quality) }) : label('phase', phase)),
      details && h('span', { class: 'meta' }, ' ', details),
      phase === 'live' && quality && linkEstimate(quality.estimate_kbps));
  }
}

/**
 * "Link 1.2 Mbit/s", or "Link 300 kbit/s (low)" in the warning style.
 * @param {number} kbps
 */
function linkEstimate(kbps) {
  const low = kbps < LOW_LINK_KBPS;
  const rate = formatRate(kbps);
  return h('span', { class: `link-estimate${low ? ' low' : ''}`, 'data-testid': 'room-link', 'data-low': String(low) },
    t(low ? 'room.link_low' : 'room.link_estimate', { rate }));
}
