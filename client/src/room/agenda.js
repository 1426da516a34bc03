/**
 * The agenda during the session: the case under discussion, its timer against its time-box,
 * the cases to come; the chair moves to the next case from here.
 */

import { reported } from '../protocol.js';
import { label, t } from '../i18n/index.js';
import { h, mount } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */
/** @typedef {import('../protocol.js').AgendaEntry} AgendaEntry */

export class AgendaPanel {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   */
  constructor(live, signal) {
    this._live = live;
    this._current = h('div', { class: 'agenda-current', 'data-testid': 'room-agenda-current', 'aria-live': 'polite' });
    this._timer = h('p', { class: 'agenda-timer', 'data-testid': 'room-agenda-timer' });
    this._actions = h('div', { class: 'agenda-actions' });
    this._list = h('ol', { class: 'room-agenda-list' });
    this.el = h('section', { class: 'room-panel room-agenda', 'aria-labelledby': 'room-agenda-heading' },
      h('h2', { id: 'room-agenda-heading' }, t('agenda.title')),
      this._current, this._timer, this._actions, this._list);
    live.on('state', () => this.render(), signal);
    const tick = setInterval(() => this._tick(), 1000);
    signal.addEventListener('abort', () => clearInterval(tick));
    this.render();
  }

  render() {
    const live = this._live;
    const agenda = live.snapshot?.agenda;
    const items = agenda?.items ?? [];
    const index = items.findIndex((item) => item.id === agenda?.current);
    const current = index >= 0 ? items[index] : null;
    this._current.dataset.itemId = current ? String(current.id) : '';
    mount(this._current, current
      ? [
        h('span', { class: 'case-number' }, current.case_number), ' ',
        h('span', { class: 'tag' }, label('lane', current.lane)),
        current.clinical_question && h('p', { class: 'question' }, current.clinical_question),
      ]
      : h('p', { class: 'empty' }, items.length ? t('room.no_current_case') : t('agenda.empty')));
    mount(this._actions, live.chairs && items.length > 0 && this._nextButton(items, index));
    mount(this._list, items.map((item, i) => h('li', {
      class: i === index ? 'current' : i < index ? 'done' : '',
      'data-testid': 'room-agenda-item',
      'data-item-id': item.id,
      'aria-current': i === index ? 'step' : null,
    },
    h('span', { class: 'case-number' }, item.case_number), ' ',
    h('span', { class: 'meta' }, t('common.minutes', { count: item.timebox_minutes })),
    live.chairs && i !== index && h('button', {
      type: 'button', class: 'button-quiet small', 'data-testid': 'room-agenda-go',
      'aria-label': t('room.discuss_case', { case: item.case_number }),
      onclick: () => void live.moveAgenda(item.id).catch(reported),
    }, t('room.discuss')))));
    this._tick();
  }

  /**
   * "Next case" moves to the item after the current one (the first when none is current);
   * after the last, the button ends the discussion.
   * @param {AgendaEntry[]} items
   * @param {number} index of the current item, -1 for none
   */
  _nextButton(items, index) {
    const last = index === items.length - 1;
    const target = last ? null : items[index + 1].id;
    return h('button', {
      type: 'button', class: 'button-primary', 'data-testid': 'room-agenda-next',
      onclick: () => void this._live.moveAgenda(target).catch(reported),
    }, last ? t('room.end_discussion') : index < 0 ? t('room.first_case') : t('room.next_case'));
  }

  /** The current case's time so far, against its time-box. */
  _tick() {
    const agenda = this._live.snapshot?.agenda;
    const current = agenda?.items.find((item) => item.id === agenda.current);
    const started = agenda?.current_started_at ? Date.parse(agenda.current_started_at) : NaN;
    if (!current || Number.isNaN(started)) {
      this._timer.hidden = true;
      return;
    }
    const elapsed = Math.max(0, Math.floor((Date.now() - started) / 1000));
    const box = current.timebox_minutes * 60;
    this._timer.hidden = false;
    this._timer.classList.toggle('over', elapsed > box);
    this._timer.textContent = t(elapsed > box ? 'room.timer_over' : 'room.timer', {
      elapsed: clock(elapsed), timebox: clock(box), over: clock(elapsed - box),
    });
  }
}

/**
 * 754 → "12:34"
 * @param {number} seconds
 */
function clock(seconds) {
  const s = Math.max(0, seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
