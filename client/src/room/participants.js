/**
 * Who is in the session, grouped by specialty, with hand, microphone and connection shown; the
 * chair hands presenting over from here.
 */

import { reported } from '../protocol.js';
import { label, t } from '../i18n/index.js';
import { h, mount } from '../ui.js';
import { icon } from './icons.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */
/** @typedef {import('../protocol.js').Participant} Participant */
/** @typedef {import('../protocol.js').Snapshot} Snapshot */

export class ParticipantList {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   */
  constructor(live, signal) {
    this._live = live;
    this._body = h('div', { class: 'participant-groups' });
    this._count = h('span', { class: 'count' });
    this.el = h('section', { class: 'room-panel participants', 'aria-labelledby': 'room-participants-heading' },
      h('h2', { id: 'room-participants-heading' }, t('room.participants'), ' ', this._count),
      this._body);
    live.on('state', () => this.render(), signal);
    this.render();
  }

  render() {
    const snapshot = this._live.snapshot;
    const people = snapshot?.participants ?? [];
    this._count.textContent = `(${people.length})`;
    /** @type {Map<string, Participant[]>} */
    const groups = new Map();
    for (const person of people) {
      const group = label('specialty', person.specialty ?? 'other');
      groups.set(group, [...(groups.get(group) ?? []), person]);
    }
    const names = [...groups.keys()].sort((a, b) => a.localeCompare(b));
    mount(this._body, names.map((name) => h('div', { class: 'participant-group', 'data-testid': 'room-specialty' },
      h('h3', null, name),
      h('ul', null, (groups.get(name) ?? [])
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((person) => this._row(person, /** @type {Snapshot} */ (snapshot)))))));
  }

  /**
   * @param {Participant} person
   * @param {Snapshot} snapshot
   */
  _row(person, snapshot) {
    const live = this._live;
    const presenting = snapshot.presenter === person.id;
    return h('li', {
      class: `participant${snapshot.speaker === person.id ? ' speaking' : ''}`,
      'data-testid': 'room-participant',
      'data-participant': person.id,
      'data-connection': person.connection,
    },
    h('span', { class: `conn conn-${person.connection}`, role: 'img', title: label('connection', person.connection), 'aria-label': label('connection', person.connection) }),
    h('div', { class: 'participant-who' },
      h('div', { class: 'participant-line' },
        h('span', { class: 'participant-name' }, person.name, person.id === live.you && ` (${t('room.you')})`),
        person.role === 'chair' && h('span', { class: 'badge' }, label('role', 'chair')),
        presenting && h('span', { class: 'badge presenter' }, t('room.presenter'))),
      h('div', { class: 'participant-line meta' },
        h('span', null, person.institution, person.external && ` · ${t('room.external')}`),
        h('span', { class: 'participant-flags' },
          person.hand && h('span', { class: 'flag hand', 'data-testid': 'room-participant-hand' }, icon('hand', t('room.hand_raised'))),
          h('span', { class: 'flag' }, person.muted ? icon('mic-off', t('room.muted')) : icon('mic', t('room.mic_on'))),
          !person.camera && h('span', { class: 'flag' }, icon('camera-off', t('room.camera_is_off'))),
          person.quality !== 'unknown' && h('span', { class: `quality quality-${person.quality}` }, label('quality', person.quality))))),
    live.chairs && h('button', {
      type: 'button', class: 'button-quiet small', 'data-testid': 'room-presenter', 'data-participant': person.id,
      onclick: () => void live.present(presenting ? null : person.id).catch(reported),
    }, presenting ? t('room.stop_presenting') : t('room.make_presenter')));
  }
}
