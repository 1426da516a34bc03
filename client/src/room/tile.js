/**
 * One tile of the video grid: a participant's video (or a placeholder while there is none) with
 * their name, institution and specialty, and what they are doing (speaking, presenting, muted,
 * hand raised), and, for someone else's tile, how the server forwards their video: in full,
 * reduced (a smaller simulcast layer: a small badge) or paused to save bandwidth (the tile dimmed
 * and saying so; their sound goes on; a resumed video says so until its next picture shows).
 * The state is in `data-quality` and always said in text.
 */

import { label, t } from '../i18n/index.js';
import { h, mount } from '../ui.js';
import { icon } from './icons.js';

/** @typedef {import('../protocol.js').Participant} Participant */
/** @typedef {import('../protocol.js').TrackQuality} TrackQuality */

/**
 * @typedef {object} TileState
 * @property {Participant | null} person null for a stream the live state names nobody for
 * @property {MediaStream | null} stream
 * @property {boolean} speaking
 * @property {boolean} presenting
 * @property {TrackQuality} [quality] how the server forwards this (remote) video; full if unsaid
 */

/** How long a resumed video may take to show a picture before its tile says it is live. */
const RESUME_WAIT_MS = 5000;

export class VideoTile {
  /**
   * @param {string} key participant id (or stream id of an unlabeled stream)
   * @param {{local?: boolean, onSoundBlocked?: () => void}} [options]
   */
  constructor(key, { local = false, onSoundBlocked = () => {} } = {}) {
    this.key = key;
    this._local = local;
    this._onSoundBlocked = onSoundBlocked;
    this.video = h('video', {
      autoplay: true,
      playsinline: true,
      'data-testid': local ? 'room-video-local' : 'room-video-remote',
      'data-participant': local ? null : key,
    });
    // Our own voice must never come back out of our speakers.
    this.video.muted = local;
    this._placeholder = h('div', { class: 'tile-placeholder', 'aria-hidden': 'true' });
    this._label = h('div', { class: 'tile-label' });
    this._paused = h('p', { class: 'tile-paused', 'data-testid': 'room-tile-paused', hidden: true });
    this.el = h('figure', { class: `tile${local ? ' local' : ''}`, 'data-testid': 'room-tile', 'data-participant': key },
      this._placeholder, this._paused, this._label);
    /** @type {TileState | null} the latest state given */
    this._state = null;
    this._wasPaused = false; // the server paused this video, and no picture has come since
    this._resuming = 0; // which wait for that picture is current
    /** @type {ReturnType<typeof setTimeout> | undefined} set while waiting for it */
    this._resumeTimer = undefined;
  }

  /** @param {TileState} state */
  update(state) {
    const { person, stream, speaking, presenting } = state;
    const quality = this._shownQuality(state);
    this.el.classList.toggle('speaking', speaking);
    this.el.classList.toggle('presenting', presenting);
    if (!this._local) this.el.dataset.quality = quality;
    const paused = !this._local && quality === 'paused';
    this._paused.hidden = !paused;
    this._paused.textContent = paused ? t('room.video_paused') : '';
    // A remote track is muted until its first packet: no camera, or one never switched on.
    const showing = stream?.getVideoTracks().some((track) => !track.muted) ?? false;
    this.el.classList.toggle('camera-off', !showing || person?.camera === false);
    this._setStream(stream);
    mount(this._placeholder, initials(person?.name ?? '?'));
    mount(this._label,
      h('span', { class: 'tile-name' }, this._local ? t('room.you') : person?.name ?? t('room.unknown_participant')),
      person && h('span', { class: 'tile-meta' }, [person.institution, label('specialty', person.specialty)].filter((x) => x && x !== '—').join(' · ')),
      h('span', { class: 'tile-flags' },
        !this._local && quality === 'reduced' && h('span', {
          class: 'badge reduced', 'data-testid': 'room-tile-reduced', title: t('room.video_reduced_hint'),
        }, t('room.video_reduced')),
        presenting && h('span', { class: 'badge presenter' }, t('room.presenter')),
        person?.hand && h('span', { class: 'flag hand' }, icon('hand', t('room.hand_raised'))),
        person?.muted && h('span', { class: 'flag' }, icon('mic-off', t('room.muted')))));
  }

  /**
   * The state the tile says: a video the server resumes stays "paused" until its next picture
   * is on screen (the first comes with a keyframe, a moment later), so a tile never claims to
   * be live while it still shows the frozen picture from before. After 5 s it says what the
   * server says, picture or not.
   * @param {TileState} state
   * @returns {TrackQuality}
   */
  _shownQuality(state) {
    const quality = state.quality ?? 'full';
    if (this._local) return quality;
    this._state = state;
    if (quality === 'paused') {
      this._resuming += 1; // forgets a wait for a picture begun before
      this._wasPaused = true;
      clearTimeout(this._resumeTimer);
      this._resumeTimer = undefined;
      return quality;
    }
    if (!this._wasPaused) return quality;
    if (this._resumeTimer === undefined) {
      const wait = ++this._resuming;
      const resumed = () => {
        if (wait !== this._resuming) return;
        this._wasPaused = false;
        clearTimeout(this._resumeTimer);
        this._resumeTimer = undefined;
        if (this._state) this.update(this._state);
      };
      this._resumeTimer = setTimeout(resumed, RESUME_WAIT_MS);
      /** @type {HTMLVideoElement} */
      const video = this.video;
      if (typeof video.requestVideoFrameCallback === 'function') video.requestVideoFrameCallback(resumed);
      else video.addEventListener('timeupdate', resumed, { once: true });
    }
    return 'paused';
  }

  /** @param {MediaStream | null} stream */
  _setStream(stream) {
    if (this.video.srcObject === stream) return;
    this.video.srcObject = stream;
    if (!stream) {
      this.video.remove();
      return;
    }
    this.el.prepend(this.video);
    this.video.play().catch((error) => {
      // Sound without a click first may be blocked: play muted and offer a button for sound.
      if (error instanceof DOMException && error.name === 'NotAllowedError' && !this.video.muted) {
        this.video.muted = true;
        void this.video.play().catch(() => {});
        this._onSoundBlocked();
      }
    });
  }

  /** Let a remote video make sound again (after the user clicked for it). */
  unmute() {
    if (this._local) return;
    this.video.muted = false;
    void this.video.play().catch(() => {});
  }

  dispose() {
    clearTimeout(this._resumeTimer);
    this._resuming += 1;
    this.video.srcObject = null;
    this.el.remove();
  }
}

/**
 * "Dr. Zhang Wei" → "ZW"; a CJK name → its first character.
 * @param {string} name
 */
function initials(name) {
  const words = name.replace(/^(Dr\.?|Prof\.?)\s+/i, '').replace(/\(.*\)/, '').trim().split(/\s+/);
  if (/[\u3400-\u9fff]/.test(words[0] ?? '')) return (words[0] ?? '?').slice(0, 1);
  return words.slice(0, 2).map((w) => w.charAt(0).toUpperCase()).join('') || '?';
}
