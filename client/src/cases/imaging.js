/**
 * A case's stored images in the diagnostic viewer, for preparation: each user looks on their own
 * ('free' mode), at their own copy (external participants see the de-identified one).
 */

import { debugHook, debugging } from '../debug.js';
import { t } from '../i18n/index.js';
import { ErrorSlot, h } from '../ui.js';

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../viewer/series.js').SeriesInfo} SeriesInfo */
/** @typedef {import('../viewer/index.js').Viewer} Viewer */

/**
 * The viewer panel of case `caseId`. It outlives re-renders of the case page (it is held for as
 * long as the page's path), so a reload of the case keeps the user's view.
 * @param {App} app
 * @param {number} caseId
 * @returns {HTMLElement}
 */
export function imagingPanel(app, caseId) {
  return app.router.hold(() => new CaseImaging(app, caseId), (imaging) => imaging.destroy()).el;
}

class CaseImaging {
  /**
   * @param {App} app
   * @param {number} caseId
   */
  constructor(app, caseId) {
    this.errors = new ErrorSlot();
    this.host = h('div', { 'data-testid': 'case-viewer' }, h('p', { class: 'loading' }, t('viewer.loading')));
    this.el = h('div', { class: 'case-imaging', hidden: true, 'data-testid': 'case-imaging' },
      h('h3', null, t('viewer.title')), this.errors.el, this.host);
    /** @type {Viewer | null} */
    this.viewer = null;
    this.destroyed = false;
    void this._start(app, caseId);
  }

  /**
   * @param {App} app
   * @param {number} caseId
   */
  async _start(app, caseId) {
    try {
      /** @type {{series: SeriesInfo[]}} */
      const { series } = await app.api.get(`/cases/${caseId}/imaging`);
      if (series.length === 0 || this.destroyed) return; // nothing stored: no viewer
      this.el.hidden = false;
      // Cornerstone3D is large: it loads only on pages that show images.
      const { Viewer } = await import('../viewer/index.js');
      if (this.destroyed) return;
      const viewer = await Viewer.create(this.host, { caseId, series, mode: 'free' });
      if (this.destroyed) {
        viewer.destroy();
        return;
      }
      this.viewer = viewer;
      if (debugging()) debugHook().viewer = viewer;
    } catch (error) {
      this.el.hidden = false;
      this.host.replaceChildren();
      this.errors.show(error instanceof Error && !('status' in error)
        ? new Error(t('viewer.start_failed', { error: error.message }))
        : error);
    }
  }

  destroy() {
    this.destroyed = true;
    const hook = debugHook();
    if (this.viewer && hook.viewer === this.viewer) delete hook.viewer;
    this.viewer?.destroy();
    this.viewer = null;
  }
}
