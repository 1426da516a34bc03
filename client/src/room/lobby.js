/**
 * The lobby, as the chair sees it: who waits to be admitted (external participants, when the
 * session requires admission), each with an Admit button.
 */

import { reported } from '../protocol.js';
import { label, t } from '../i18n/index.js';
import { h, mount } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */

export class LobbyPanel {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   */
  constructor(live, signal) {
    this._live = live;
    this._list = h('ul', { class: 'lobby-list' });
    this.el = h('section', { class: 'room-panel lobby', 'data-testid': 'room-lobby', 'aria-labelledby': 'room-lobby-heading' },
      h('h2', { id: 'room-lobby-heading' }, t('room.lobby')), this._list);
    live.on('lobby', () => this.render(), signal);
    live.on('state', () => this.render(), signal);
    this.render();
  }

  render() {
    const live = this._live;
    const waiting = live.chairs ? live.waiting : [];
    this.el.hidden = waiting.length === 0;
    mount(this._list, waiting.map((person) => h('li', { 'data-testid': 'room-lobby-entry', 'data-participant': person.id },
      h('span', { class: 'participant-who' },
        h('span', { class: 'participant-name' }, person.name),
        h('span', { class: 'meta' }, person.institution, ' · ', label('specialty', person.specialty))),
      h('button', {
        type: 'button', class: 'button-primary small', 'data-testid': 'room-lobby-admit', 'data-participant': person.id,
        onclick: (/** @type {MouseEvent} */ event) => {
          /** @type {HTMLButtonElement} */ (event.currentTarget).disabled = true;
          void live.admit(person.id).catch(reported);
        },
      }, t('room.admit')))));
  }
}
