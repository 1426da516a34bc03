/**
 * The stage: the presenter's shared screen, large, above the video grid, labelled with who
 * shares it; our own screen while we share it. Hidden while nobody shares (and while a shared
 * screen has not sent its first frame).
 */

import { t } from '../i18n/index.js';
import { h } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */

export class ScreenStage {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   */
  constructor(live, signal) {
    this._live = live;
    this.video = h('video', { autoplay: true, playsinline: true, 'data-testid': 'room-stage' });
    this.video.muted = true; // a screen share carries no sound
    this._label = h('figcaption', { class: 'stage-label', 'data-testid': 'room-stage-label' });
    this.el = h('figure', { class: 'screen-stage', 'aria-label': t('room.shared_screen') }, this.video, this._label);
    live.on('state', () => this.render(), signal);
    live.on('streams', () => this.render(), signal);
    live.on('screen', () => this.render(), signal);
    this.render();
  }

  render() {
    const live = this._live;
    // Only the presenter's screen is shown (the server forwards no other).
    const presenter = live.snapshot?.presenter ?? null;
    const sharer = live.screen ? live.you : presenter;
    const stream = live.screen ?? (presenter ? live.screens.get(presenter) : undefined) ?? null;
    const showing = stream?.getVideoTracks().some((track) => !track.muted) ?? false;
    this.el.hidden = !showing;
    this.video.dataset.participant = showing && sharer ? sharer : '';
    if (this.video.srcObject !== (showing ? stream : null)) {
      this.video.srcObject = showing ? stream : null;
      if (showing) void this.video.play().catch(() => {}); // muted: autoplay is allowed
    }
    const name = live.snapshot?.participants.find((p) => p.id === sharer)?.name ?? t('room.unknown_participant');
    this._label.textContent = sharer === live.you ? t('room.sharing_yours') : t('room.sharing', { name });
  }
}
