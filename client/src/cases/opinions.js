/**
 * Preliminary opinions on a case: what members wrote before the session, and the user's own.
 */

import { viewerTimeZone } from '../api.js';
import { formatDateTime, label, t } from '../i18n/index.js';
import { ErrorSlot, busy, h, mount } from '../ui.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Opinion} Opinion */
/** @typedef {import('../types.js').ItemList<Opinion>} OpinionList */

/**
 * @param {App} app
 * @param {number} caseId
 */
export function opinionsSection(app, caseId) {
  const list = h('div', { class: 'opinion-list' }, h('p', { class: 'loading' }, t('common.loading')));
  const errors = new ErrorSlot();
  const mine = h('textarea', { id: 'opinion-mine', rows: '4', 'data-testid': 'opinion-mine' });
  const status = h('span', { class: 'status', role: 'status', 'data-testid': 'opinion-status' });
  const save = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'opinion-save' }, t('opinions.save'));

  async function load() {
    try {
      /** @type {OpinionList} */
      const { items } = await app.api.get(`/cases/${caseId}/opinions`);
      const own = items.find((o) => String(o.user_id) === String(app.user.id));
      if (own && !mine.value) mine.value = own.text;
      // The user's own opinion is in the form below, when they may give one.
      const others = app.may('opine') ? items.filter((o) => o !== own) : items;
      mount(list, others.length === 0
        ? h('p', { class: 'empty' }, t('opinions.empty'))
        : h('ul', null, others.map(opinionItem)));
    } catch (error) {
      mount(list, null);
      errors.show(error);
    }
  }

  /** @param {SubmitEvent} event */
  async function onSubmit(event) {
    event.preventDefault();
    errors.clear();
    status.textContent = '';
    try {
      await busy(save, () => app.api.put(`/cases/${caseId}/opinions/mine`, { text: mine.value }));
      status.textContent = t('opinions.saved');
    } catch (error) {
      errors.show(error);
    }
  }

  void load();
  return h('section', { class: 'panel opinions', 'aria-labelledby': 'opinions-heading' },
    h('h2', { id: 'opinions-heading' }, t('opinions.title')),
    list,
    errors.el,
    app.may('opine') && h('form', { onsubmit: onSubmit, 'data-testid': 'opinion-form' },
      h('label', { for: 'opinion-mine' }, t('opinions.mine')),
      mine,
      h('div', { class: 'form-actions' }, save, status)));
}

/** @param {Opinion} o */
function opinionItem(o) {
  return h('li', { class: 'opinion', 'data-testid': 'opinion-item' },
    h('p', { class: 'meta' },
      h('strong', null, o.display_name),
      o.specialty && ` · ${label('specialty', o.specialty)}`,
      ` · ${formatDateTime(o.updated_at, viewerTimeZone())}`),
    h('p', { class: 'opinion-text' }, o.text));
}
