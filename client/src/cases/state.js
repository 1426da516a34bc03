/**
 * A case's workflow state, as a word and as a badge.
 */

import { label, t } from '../i18n/index.js';
import { h } from '../ui.js';

/** The states in workflow order. */
export const CASE_STATES = [
  'requested', 'accepted', 'rejected', 'in_preparation', 'ready', 'discussed', 'finalized', 'closed',
];

/**
 * @param {string} state
 */
export function stateBadge(state) {
  return h('span', { class: `badge state-${state}`, 'data-testid': 'case-state', 'data-state': state },
    label('state', state));
}

/**
 * A badge saying whether the readiness checklist passes.
 * @param {boolean} ready
 */
export function readyBadge(ready) {
  return h('span', { class: `badge ${ready ? 'ok' : 'not-ok'}`, 'data-testid': 'case-ready', 'data-ready': String(ready) },
    ready ? `✓ ${t('cases.ready')}` : `✗ ${t('cases.not_ready')}`);
}
