/**
 * A case's agreed plan: the current version's content (read-only, labelled from its template),
 * whether its signatures check out in this browser, the version history with amendment reasons
 * and hashes, attendance and quorum as signed, and the follow-up of each recommendation, which
 * coordinators keep up to date.
 */

import './notes.css';
import { viewerTimeZone } from '../api.js';
import { formatDateTime, label, t } from '../i18n/index.js';
import { ErrorSlot, busy, errorText, h, mount } from '../ui.js';
import { amendControl } from './amend.js';
import { attendanceTable, nameOf, quorumIndicator } from './attendance.js';
import { verifyPlan } from './signature.js';
import { displayValue } from './template.js';
import { noteView } from './view.js';

/** @typedef {import('../api.js').Api} Api */
/** @typedef {import('../types.js').Plan} Plan */
/** @typedef {import('../types.js').SignedPlan} SignedPlan */
/** @typedef {import('../types.js').Followup} Followup */
/** @typedef {import('./template.js').Templates} Templates */
/** @typedef {import('./template.js').Schema} Schema */
/** @typedef {import('./signature.js').Verification} Verification */

const FOLLOWUP_STATUSES = ['planned', 'done', 'not_done'];
const NOT_DONE_REASONS = ['patient_choice', 'change_in_condition', 'did_not_attend', 'died', 'comorbidity', 'new_information', 'other'];

/**
 * @typedef {object} PlanOptions
 * @property {Api} api
 * @property {number} caseId
 * @property {Plan} plan
 * @property {Templates} templates
 * @property {boolean} canAmend the chair may open an amendment
 * @property {boolean} canFollowUp coordinators and admins record follow-up
 * @property {() => void} onAmend an amendment was opened
 */

export class AgreedPlan {
  /** @param {PlanOptions} options */
  constructor({ api, caseId, plan, templates, canAmend, canFollowUp, onAmend }) {
    this._api = api;
    this._caseId = caseId;
    this._plan = plan;
    this._canFollowUp = canFollowUp;
    /** @type {Schema | null} */
    this._template = null;
    const current = plan.current;
    this._signature = h('p', { class: 'signature-status checking', 'data-signature-status': '', role: 'status' }, t('plan.signature_checking'));
    this._content = h('div', { class: 'plan-content' }, h('p', { class: 'loading' }, t('common.loading')));
    this._followup = h('div', { class: 'plan-followup' });
    this._errors = new ErrorSlot();
    this.el = h('section', { class: 'agreed-plan', 'data-agreed-plan': '', 'data-version': current.version, 'aria-labelledby': 'plan-heading' },
      h('div', { class: 'note-head' },
        h('h3', { id: 'plan-heading' }, t('plan.title'), ' ',
          h('span', { class: 'badge state-finalized', 'data-plan-version': current.version }, t('plan.version', { version: current.version }))),
        this._signature),
      h('p', { class: 'meta' }, t('plan.finalized_by', {
        name: nameOf(current.finalized_by), at: formatDateTime(current.finalized_at, viewerTimeZone()),
      })),
      current.amendment_reason && h('p', { class: 'notice' }, t('note.amendment_reason', { reason: current.amendment_reason })),
      this._content,
      quorumIndicator(current.quorum, 'data-plan-quorum'),
      h('details', { class: 'note-attendance' },
        h('summary', null, t('note.attendance', { count: current.attendance?.length ?? 0 })),
        attendanceTable(current.attendance ?? [])),
      h('h4', null, t('plan.followup')),
      this._errors.el,
      this._followup,
      h('details', { class: 'plan-history' },
        h('summary', null, t('plan.history', { count: plan.versions.length })),
        historyTable(plan)),
      h('div', { class: 'note-actions' },
        h('a', { class: 'button-quiet', href: api.url(`/cases/${caseId}/plan/signed`), download: `plan-${caseId}-v${current.version}.json` },
          t('plan.download_signed')),
        canAmend && amendControl(api, caseId, onAmend)));
    this._showFollowup();
    void this._showContent(templates);
    void this._verify();
  }

  /** @param {Templates} templates */
  async _showContent(templates) {
    try {
      this._template = await templates.get(this._plan.current.template);
      mount(this._content, noteView(this._template, this._plan.current.note));
      this._showFollowup(); // recommendation labels come from the template
    } catch (error) {
      mount(this._content, h('p', { class: 'alert' }, errorText(error)));
    }
  }

  /** Check the signed export against the keys the server publishes; say what was found. */
  async _verify() {
    /** @type {Verification} */
    let result;
    try {
      /** @type {[SignedPlan, {keys: JsonWebKey[]}]} */
      const [signed, keys] = await Promise.all([
        // Fetched to check the signature here, not to keep: audited as a view, not an export.
        this._api.get(`/cases/${this._caseId}/plan/signed`, { purpose: 'view' }),
        this._api.get('/keys'),
      ]);
      result = await verifyPlan(signed, keys, this._plan.current);
    } catch (error) {
      this._showSignature(false, t('plan.signature_unchecked', { error: errorText(error) }));
      return;
    }
    if (result.outcome === 'verified') {
      const kids = result.kids.join(', ');
      this._showSignature(true, result.kids.length > 1 ? t('plan.signature_verified_keys', { kids }) : t('plan.signature_verified', { kid: kids }));
    } else if (result.outcome === 'failed') {
      const problem = t(/** @type {import('../i18n/index.js').MessageKey} */ (`plan.problem_${result.problem}`), { version: result.version ?? '' });
      this._showSignature(false, t('plan.signature_failed', { problem }));
    } else if (this._plan.verified) {
      // This browser cannot check Ed25519 itself (or the page is not a secure context).
      this._showSignature(true, t('plan.signature_server_verified'));
    } else {
      this._showSignature(false, t('plan.signature_server_failed', { problems: this._plan.problems.join('; ') }));
    }
  }

  /**
   * @param {boolean} verified
   * @param {string} text
   */
  _showSignature(verified, text) {
    this._signature.dataset.verified = String(verified);
    this._signature.className = `signature-status ${verified ? 'verified' : 'failed'}`;
    mount(this._signature, h('span', { 'aria-hidden': 'true' }, verified ? '✓ ' : '✗ '), text);
  }

  // -- follow-up --------------------------------------------------------------------------

  _showFollowup() {
    const followup = this._plan.followup;
    mount(this._followup, followup.length === 0
      ? h('p', { class: 'empty' }, t('plan.no_followup'))
      : h('div', { class: 'table-wrap' }, h('table', { class: 'compact followup', 'data-followup': '' },
        h('thead', null, h('tr', null,
          h('th', { scope: 'col', class: 'num' }, t('plan.rank')),
          h('th', { scope: 'col' }, t('plan.recommendation')),
          h('th', { scope: 'col' }, t('plan.status')),
          h('th', { scope: 'col' }, t('plan.reason')),
          h('th', { scope: 'col' }, t('plan.comment')),
          h('th', { scope: 'col' }, t('plan.updated')),
          this._canFollowUp && h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, t('plan.save_followup'))))),
        h('tbody', null, followup.map((f) => (this._canFollowUp ? this._editableRow(f) : this._row(f)))))));
  }

  /** @param {Followup} f */
  _row(f) {
    return h('tr', { 'data-rank': f.rank },
      h('td', { class: 'num' }, f.rank),
      h('td', null, this._recommendation(f)),
      h('td', null, h('span', { class: `badge followup-${f.status}` }, label('followup_status', f.status))),
      h('td', null, f.reason ? label('followup_reason', f.reason) : '—'),
      h('td', null, f.comment || '—'),
      h('td', null, f.updated_at ? formatDateTime(f.updated_at, viewerTimeZone()) : '—'));
  }

  /** @param {Followup} f */
  _editableRow(f) {
    const status = h('select', { 'data-followup-status': f.rank, 'aria-label': t('plan.status') },
      FOLLOWUP_STATUSES.map((s) => h('option', { value: s }, label('followup_status', s))));
    status.value = f.status;
    const reason = h('select', { 'data-followup-reason': f.rank, 'aria-label': t('plan.reason') },
      h('option', { value: '' }, '—'),
      NOT_DONE_REASONS.map((r) => h('option', { value: r }, label('followup_reason', r))));
    reason.value = f.reason ?? '';
    const comment = h('input', { type: 'text', value: f.comment ?? '', 'data-followup-comment': f.rank, 'aria-label': t('plan.comment') });
    const reasonNeeded = () => { reason.disabled = status.value !== 'not_done'; };
    status.addEventListener('change', reasonNeeded);
    reasonNeeded();
    const save = h('button', { type: 'button', class: 'button-quiet small', 'data-followup-save': f.rank }, t('plan.save_followup'));
    save.addEventListener('click', () => void this._saveFollowup(save, f.rank, {
      status: status.value,
      ...(status.value === 'not_done' && reason.value ? { reason: reason.value } : {}),
      ...(comment.value.trim() ? { comment: comment.value.trim() } : {}),
    }));
    return h('tr', { 'data-rank': f.rank },
      h('td', { class: 'num' }, f.rank),
      h('td', null, this._recommendation(f)),
      h('td', null, status),
      h('td', null, reason),
      h('td', null, comment),
      h('td', null, f.updated_at ? formatDateTime(f.updated_at, viewerTimeZone()) : '—'),
      h('td', null, save));
  }

  /**
   * @param {HTMLButtonElement} button
   * @param {number} rank
   * @param {{status: string, reason?: string, comment?: string}} body
   */
  async _saveFollowup(button, rank, body) {
    this._errors.clear();
    try {
      /** @type {Plan} */
      const plan = await busy(button, () => this._api.put(`/cases/${this._caseId}/plan/followup/${rank}`, body));
      this._plan = { ...this._plan, followup: plan.followup };
      this._showFollowup();
    } catch (error) {
      this._errors.show(error);
    }
  }

  /**
   * The recommendation a follow-up row is about: its type's label from the template.
   * @param {Followup} f
   */
  _recommendation(f) {
    const typeSchema = this._template?.properties?.recommendations?.items?.properties?.type;
    return typeSchema ? displayValue(typeSchema, f.type) : f.type;
  }
}

/**
 * Every signed version: when, by whom, why (amendments), and the hashes that chain them.
 * @param {Plan} plan
 */
function historyTable(plan) {
  const zone = viewerTimeZone();
  return h('div', { class: 'table-wrap' }, h('table', { class: 'compact', 'data-plan-history': '' },
    h('thead', null, h('tr', null,
      h('th', { scope: 'col', class: 'num' }, t('plan.version_column')),
      h('th', { scope: 'col' }, t('plan.finalized')),
      h('th', { scope: 'col' }, t('plan.amendment')),
      h('th', { scope: 'col' }, t('plan.hash')),
      h('th', { scope: 'col' }, t('plan.previous_hash')))),
    h('tbody', null, plan.versions.map((v) => h('tr', { 'data-version': v.version },
      h('td', { class: 'num' }, v.version),
      h('td', null, formatDateTime(v.finalized_at, zone), h('br'), h('span', { class: 'meta' }, nameOf(v.finalized_by)),
        v.kid && h('span', { class: 'meta' }, ` · ${t('plan.key', { kid: v.kid })}`)),
      h('td', null, v.amendment_reason ?? '—'),
      h('td', { class: 'uid', title: v.hash }, shortHash(v.hash)),
      h('td', { class: 'uid', title: v.previous_hash ?? '' }, v.previous_hash ? shortHash(v.previous_hash) : '—'))))));
}

/** @param {string} hash */
function shortHash(hash) {
  const value = hash.includes(':') ? hash.slice(hash.indexOf(':') + 1) : hash;
  return `${value.slice(0, 16)}…`;
}
