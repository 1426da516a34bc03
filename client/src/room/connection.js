/**
 * The connection-quality indicator: a dot and a word from the media connections' round-trip
 * time and packet loss, or "reconnecting" while the live session is being re-established.
 */

import { formatPercent, label, t } from '../i18n/index.js';
import { h, mount } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */

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
    this.render();
  }

  render() {
    const { phase, link } = this._live;
    const state = phase === 'live' ? link.quality : phase;
    this.el.dataset.quality = state;
    this.el.dataset.phase = phase;
    const details = phase === 'live' && link.rtt !== null
      ? t('room.link_details', { rtt: Math.round(link.rtt * 1000), loss: formatPercent(link.loss ?? 0) })
      : '';
    mount(this.el,
      h('span', { class: `dot quality-${state}`, 'aria-hidden': 'true' }),
      h('span', null, phase === 'live' ? t('room.connection', { quality: label('quality', link.quality) }) : label('phase', phase)),
      details && h('span', { class: 'meta' }, ' ', details));
  }
}
