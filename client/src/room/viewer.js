/**
 * The synchronised viewer in the live room. The presenter drives it: their changes go out as
 * view patches; everyone else follows, applying the presenter's patches in order, and may leave
 * "follow" to look around and come back with one click. Each browser renders the original
 * pixels of its own copy (external participants the de-identified one) from our DICOMweb; the
 * wire only carries series aliases and image indices.
 *
 * The series shown are those of the current agenda case; a series the view names from another
 * case on the agenda is looked up when it appears.
 *
 * From joining on, the images of every case on the agenda are prefetched (`viewer/prefetch.js`):
 * the series on screen from its slice outward, the rest of the current case, then the cases to
 * come, paced so the call's media keeps its bandwidth (`rate`, bits per second: by default a
 * conservative share; give it the link's estimate when there is one).
 */

import { t } from '../i18n/index.js';
import { h, mount } from '../ui.js';
import { ViewSync } from '../viewsync.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */
/** @typedef {import('../api.js').Api} Api */
/** @typedef {import('../viewsync.js').ViewState} ViewState */
/** @typedef {import('../viewer/index.js').Viewer} Viewer */
/** @typedef {import('../viewer/index.js').SeriesInfo} SeriesInfo */
/** @typedef {import('../viewer/prefetch.js').Prefetch} Prefetch */
/** @typedef {import('../viewer/prefetch.js').PlannedSeries} PlannedSeries */
/** @typedef {import('../viewer/series.js').Series} Series */

export class ViewerPanel {
  /**
   * @param {LiveClient} live
   * @param {Api} api
   * @param {AbortSignal} signal
   */
  constructor(live, api, signal) {
    this._live = live;
    this._api = api;
    this._signal = signal;
    this.sync = new ViewSync(live);
    /** @type {Viewer | null} */
    this.viewer = null;
    /** @type {Promise<Viewer | null> | null} */
    this._opening = null;
    /** Series lists by case id, as this user may see them. */
    this._series = /** @type {Map<number, SeriesInfo[]>} */ (new Map());
    /** @type {number | null} the case whose series the viewer lists */
    this._caseId = null;
    /** Whether this follower looks around on their own for now. */
    this._free = false;
    /** Patches are applied one after another, in the order they came. */
    this._chain = Promise.resolve();
    /** @type {Prefetch | null} the agenda's images, fetched ahead (see `viewer/prefetch.js`) */
    this.prefetch = null;
    /** @type {Promise<Prefetch | null> | null} */
    this._prefetching = null;
    /** @type {(() => number) | null} bits per second prefetch may take; null: its default */
    this.rate = null;
    /** Series with their metadata, loaded once for prefetch and the viewer, by alias and UID. */
    this._ahead = /** @type {Map<string, Promise<Series>>} */ (new Map());
    this._agendaKey = '';
    this._host = h('div', { class: 'room-viewer-host' });
    this._status = h('p', { class: 'room-viewer-status muted', 'data-testid': 'room-viewer-status' });
    this.el = h('section', { class: 'room-viewer', 'data-testid': 'room-viewer', 'aria-label': t('room.viewer') },
      this._status, this._host);
    this.el.hidden = true;

    live.on('state', () => {
      this._prefetchAgenda();
      this._refresh();
    }, signal);
    live.on('phase', (phase) => {
      // Back after a reconnect while presenting: the server gets our whole view again.
      if (phase === 'live' && live.presenting && this.viewer) this.sync.resend(this.viewer.state);
    }, signal);
    this.sync.on('update', ({ seq, patch }) => {
      if (this._following()) this._queue(async (viewer) => {
        await this._know(patch);
        await viewer.apply(patch);
        this._shown(viewer, seq);
      });
    }, signal);
    this.sync.on('reset', ({ seq, state }) => {
      if (this._following()) this._queue(async (viewer) => {
        await this._know(state);
        await viewer.load(state);
        this._shown(viewer, seq);
      });
    }, signal);
    this.sync.on('pointer', ({ viewport, point }) => {
      if (this._following()) this.viewer?.showPointer(viewport, point);
    }, signal);
    signal.addEventListener('abort', () => this.viewer?.destroy());
  }

  /**
   * @param {Viewer} viewer
   * @param {number} seq
   */
  _shown(viewer, seq) {
    viewer.element.dataset.seq = String(seq);
    this.sync.shown(seq);
  }

  _following() {
    return !this._live.presenting && !this._free;
  }

  /** The agenda or presenter changed: show the current case's series, in the right mode. */
  _refresh() {
    const snapshot = this._live.snapshot;
    if (!snapshot || this._signal.aborted) return;
    const item = snapshot.agenda.items.find((i) => i.id === snapshot.agenda.current);
    const named = snapshot.view.state.viewports.some((v) => v.series);
    const caseId = item?.case_id ?? null;
    if (caseId === null && !named && !this.viewer) {
      this.el.hidden = true;
      return;
    }
    this._status.textContent = this._live.presenting
      ? t('room.viewer_presenting')
      : snapshot.presenter ? t('room.viewer_following', { name: nameOf(snapshot, snapshot.presenter) }) : t('room.viewer_no_presenter');
    // In the viewer's one queue, so a change of case or presenter never overtakes a patch.
    this._queue(async (viewer) => {
      const mode = this._live.presenting ? 'present' : this._free ? 'free' : 'follow';
      const before = viewer.mode;
      const newCase = caseId !== null && caseId !== this._caseId;
      if (newCase) {
        this._caseId = caseId;
        await this._seriesOf(caseId);
      }
      // The mode first: a presenter with nothing on screen gets the case's first series.
      if (before !== mode) viewer.setMode(mode);
      if (newCase) await viewer.setSeries(this._known());
      if (mode === 'present' && before !== 'present') {
        // We were made the presenter: what we show now is the shared view. With nothing on
        // screen (made presenter after the case was opened), that is the case's first series.
        if (!newCase && !viewer.state.viewports.some((v) => v.series)) await viewer.setSeries(this._known());
        this.sync.resend(viewer.state);
      } else if (mode === 'follow' && before === 'present') {
        // We handed presenting on: from now on we follow the shared view as it is.
        await this._know(this.sync.state);
        await viewer.load(this.sync.state);
        this._shown(viewer, this.sync.seq);
      }
    });
  }

  /** Start prefetching the agenda's images on joining; plan again when the agenda moves. */
  _prefetchAgenda() {
    const agenda = this._live.snapshot?.agenda;
    if (!agenda || this._signal.aborted) return;
    const key = `${agenda.current}:${agenda.items.map((i) => i.id).join(',')}`;
    if (this._prefetching) {
      if (key !== this._agendaKey) this.prefetch?.replan();
      this._agendaKey = key;
      return;
    }
    this._agendaKey = key;
    this._prefetching = import('../viewer/prefetch.js').then(({ startPrefetch, defaultRate }) => {
      if (this._signal.aborted) return null;
      const prefetch = startPrefetch({ plan: () => this._plan(), rate: () => (this.rate ? this.rate() : defaultRate()) });
      this._signal.addEventListener('abort', () => prefetch.stop());
      this.prefetch = prefetch;
      return prefetch;
    }, (error) => {
      console.warn('ViewerPanel: no prefetch: %s', error);
      return null;
    });
  }

  /**
   * What to prefetch, in the order it will be shown: the series the shared view shows (from its
   * image), the rest of the current case, the cases to come, then those discussed already.
   * @returns {Promise<PlannedSeries[]>}
   */
  async _plan() {
    const agenda = this._live.snapshot?.agenda;
    const items = agenda?.items ?? [];
    const at = items.findIndex((i) => i.id === agenda?.current);
    const ordered = at < 0 ? items : [...items.slice(at), ...items.slice(0, at)];
    /** @type {PlannedSeries[]} */
    const out = [];
    for (const item of ordered) {
      /** @type {SeriesInfo[]} */
      let list = [];
      try {
        list = await this._seriesOf(item.case_id);
      } catch (error) {
        console.warn('ViewerPanel: series of case %d not listed: %s', item.case_id, error);
      }
      for (const info of list) {
        out.push({ alias: info.alias, from: Math.floor(info.instances / 2), imageIds: () => this._imageIds(info) });
      }
    }
    const shown = this.sync.state.viewports[this.sync.state.active];
    const first = out.find((p) => p.alias === shown?.series);
    if (!first || !shown) return out;
    return [{ ...first, from: shown.index }, ...out.filter((p) => p !== first)];
  }

  /**
   * A series' image ids: the viewer's copy when it lists the series, else loaded for prefetch.
   * @param {SeriesInfo} info
   */
  async _imageIds(info) {
    return (await this._loadSeries(info)).imageIds;
  }

  /**
   * A series with its metadata, loaded once for prefetch and the viewer alike.
   * @param {SeriesInfo} info
   * @returns {Promise<Series>}
   */
  _loadSeries(info) {
    const key = `${info.alias} ${info.series_instance_uid}`;
    let loading = this._ahead.get(key);
    if (!loading) {
      loading = import('../viewer/series.js').then(({ Series }) => Series.load(info));
      this._ahead.set(key, loading);
      loading.catch(() => this._ahead.delete(key));
    }
    return loading;
  }

  /** @returns {Promise<Viewer | null>} */
  _open() {
    this._opening ??= (async () => {
      const { Viewer } = await import('../viewer/index.js');
      const prefetch = await this._prefetching;
      if (this._signal.aborted) return null;
      this.el.hidden = false;
      const viewer = await Viewer.create(this._host, {
        caseId: this._caseId ?? 0, series: [], mode: 'follow', prefetch, loadSeries: (info) => this._loadSeries(info),
      });
      viewer.onChange((patch) => this.sync.send(patch));
      viewer.onPointer((cell, point) => this.sync.pointer(cell, point));
      viewer.element.addEventListener('viewer-mode', (event) => {
        const mode = /** @type {CustomEvent<string>} */ (event).detail;
        this._free = mode === 'free';
        if (mode === 'follow') {
          // Back to the presenter's view: load the state as it is now.
          this._queue(async (v) => {
            await this._know(this.sync.state);
            await v.load(this.sync.state);
            this._shown(v, this.sync.seq);
          });
        }
        this._refresh();
      });
      this.viewer = viewer;
      if (!this._live.presenting) {
        const { seq, state } = this.sync;
        this._queue(async (v) => {
          await this._know(state);
          await v.load(state);
          this._shown(v, seq);
        });
      }
      return viewer;
    })();
    return this._opening;
  }

  /** @param {(viewer: Viewer) => Promise<void>} step */
  _queue(step) {
    this._chain = this._chain.then(async () => {
      const viewer = await this._open();
      if (viewer && !this._signal.aborted) await step(viewer);
    }).catch((error) => {
      mount(this._status, h('span', { class: 'danger' }, t('room.viewer_failed', { message: String(error?.message ?? error) })));
    });
  }

  /**
   * Make sure the viewer knows every series the state or patch names: a case of the agenda
   * other than the current one may be shown.
   * @param {{viewports?: ViewState['viewports'] | Record<string, ViewState['viewports'][number]>}} view
   */
  async _know(view) {
    const named = Object.values(view.viewports ?? {}).map((v) => v.series).filter((s) => s !== null);
    const known = new Set([...this._series.values()].flat().map((s) => s.alias));
    if (named.every((alias) => known.has(alias))) return;
    const snapshot = this._live.snapshot;
    for (const item of snapshot?.agenda.items ?? []) await this._seriesOf(item.case_id);
    await this.viewer?.setSeries(this._known());
  }

  /** Every series we know of, the current case's first (the picker lists them in this order). */
  _known() {
    const current = this._caseId !== null ? this._series.get(this._caseId) ?? [] : [];
    const others = [...this._series.entries()].filter(([id]) => id !== this._caseId).flatMap(([, list]) => list);
    return [...current, ...others];
  }

  /**
   * @param {number} caseId
   * @returns {Promise<SeriesInfo[]>}
   */
  async _seriesOf(caseId) {
    let list = this._series.get(caseId);
    if (!list) {
      /** @type {{series: SeriesInfo[]}} */
      const body = await this._api.get(`/cases/${caseId}/imaging`);
      list = body.series;
      this._series.set(caseId, list);
    }
    return list;
  }
}

/**
 * @param {import('../protocol.js').Snapshot} snapshot
 * @param {string} id
 */
function nameOf(snapshot, id) {
  return snapshot.participants.find((p) => p.id === id)?.name ?? t('room.unknown_participant');
}
