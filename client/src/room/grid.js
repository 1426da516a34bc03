/**
 * The video grid: our own video (muted) and one tile per remote participant, the active speaker
 * emphasised, each remote tile showing how the server forwards that participant's camera to us
 * (the latest `media-quality`).
 */

import { t } from '../i18n/index.js';
import { h } from '../ui.js';
import { VideoTile } from './tile.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */
/** @typedef {import('../protocol.js').Participant} Participant */
/** @typedef {import('../protocol.js').MediaQuality} MediaQuality */
/** @typedef {import('../protocol.js').TrackQuality} TrackQuality */

export class VideoGrid {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal ends the grid's listening
   */
  constructor(live, signal) {
    this._live = live;
    this._local = new VideoTile('local', { local: true });
    /** @type {Map<string, VideoTile>} */
    this._tiles = new Map();
    this._sound = h('button', {
      type: 'button', class: 'button-primary sound-button', hidden: true, 'data-testid': 'room-sound',
      onclick: () => {
        for (const tile of this._tiles.values()) tile.unmute();
        this._sound.hidden = true;
      },
    }, t('room.sound_on'));
    this._grid = h('div', { class: 'video-grid', 'data-testid': 'room-grid' }, this._local.el);
    this.el = h('section', { class: 'room-videos', 'aria-label': t('room.videos') }, this._grid, this._sound);
    live.on('state', () => this.render(), signal);
    live.on('streams', () => this.render(), signal);
    live.on('local', () => this.render(), signal);
    live.on('quality', () => this.render(), signal);
    this.render();
  }

  render() {
    const live = this._live;
    const snapshot = live.snapshot;
    const people = new Map((snapshot?.participants ?? []).map((p) => [p.id, p]));
    const speaker = snapshot?.speaker ?? null;
    const presenter = snapshot?.presenter ?? null;
    this._local.update({
      person: live.me ?? null,
      stream: live.local,
      speaking: speaker === live.you,
      presenting: presenter === live.you,
    });
    this._local.el.classList.toggle('camera-off', !live.camera || !live.local?.getVideoTracks().length);
    // Everyone admitted but us, with their stream once it arrives; and any stream nobody claims.
    const keys = [...people.keys()].filter((id) => id !== live.you);
    for (const key of live.remote.keys()) if (!people.has(key) && key !== live.you) keys.push(key);
    for (const [key, tile] of this._tiles) {
      if (!keys.includes(key)) {
        tile.dispose();
        this._tiles.delete(key);
      }
    }
    for (const key of keys) {
      let tile = this._tiles.get(key);
      if (!tile) {
        tile = new VideoTile(key, { onSoundBlocked: () => { this._sound.hidden = false; } });
        this._tiles.set(key, tile);
        this._grid.append(tile.el);
      }
      tile.update({
        person: people.get(key) ?? null,
        stream: live.remote.get(key) ?? null,
        speaking: speaker === key,
        presenting: presenter === key,
        quality: trackQuality(live.quality, live.cameraTracks.get(key)),
      });
    }
    this._grid.dataset.count = String(keys.length + 1);
  }
}

/**
 * How the server forwards a camera track to us, by its latest word; full when it named none.
 * @param {MediaQuality | null} quality
 * @param {string | undefined} track the down-track id (`<participant>-video-<generation>`)
 * @returns {TrackQuality}
 */
function trackQuality(quality, track) {
  const state = track === undefined ? undefined : quality?.tracks[track];
  return state === 'reduced' || state === 'paused' ? state : 'full';
}
