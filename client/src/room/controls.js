/**
 * The participant's own controls: microphone, camera, raised hand, screen share (the presenter),
 * devices, leave.
 */

import { reported } from '../protocol.js';
import { t } from '../i18n/index.js';
import { h } from '../ui.js';
import { DevicePicker, openScreen } from './devices.js';
import { icon } from './icons.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */

export class Controls {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   * @param {() => void} onLeave called once the participant has left
   */
  constructor(live, signal, onLeave) {
    this._live = live;
    this._mute = h('button', {
      type: 'button', class: 'button-quiet', 'data-testid': 'room-mute',
      onclick: () => void live.setMuted(!live.muted).catch(reported),
    });
    this._camera = h('button', {
      type: 'button', class: 'button-quiet', 'data-testid': 'room-camera',
      onclick: () => void live.setCamera(!live.camera).catch(reported),
    });
    this._hand = h('button', {
      type: 'button', class: 'button-quiet', 'data-testid': 'room-hand',
      onclick: () => void live.raiseHand(!live.me?.hand).catch(reported),
    });
    this._share = h('button', {
      type: 'button', class: 'button-quiet', 'data-testid': 'room-share',
      onclick: () => void this._toggleShare(),
    });
    this._watching = h('p', { class: 'hint', 'data-testid': 'room-watch-only' }, t('room.watch_only'));
    const leave = h('button', {
      type: 'button', class: 'button-primary danger', 'data-testid': 'room-leave',
      onclick: async () => {
        leave.disabled = true;
        await live.leave();
        onLeave();
      },
    }, t('room.leave'));
    this.el = h('div', { class: 'room-controls', role: 'toolbar', 'aria-label': t('room.controls') },
      this._mute, this._camera, this._hand, this._share, new DevicePicker(live, signal).el, leave, this._watching);
    live.on('local', () => this.render(), signal);
    live.on('screen', () => this.render(), signal);
    live.on('state', () => this.render(), signal);
    live.on('phase', () => this.render(), signal);
    this.render();
  }

  render() {
    const live = this._live;
    const inRoom = live.phase === 'live';
    const hasMic = Boolean(live.local?.getAudioTracks().length);
    const hasCamera = Boolean(live.local?.getVideoTracks().length);
    const hand = Boolean(live.me?.hand);
    setToggle(this._mute, live.muted, icon(live.muted ? 'mic-off' : 'mic'), live.muted ? t('room.unmute') : t('room.mute'), !inRoom || !hasMic);
    setToggle(this._camera, !live.camera, icon(live.camera ? 'camera' : 'camera-off'), live.camera ? t('room.camera_off') : t('room.camera_on'), !inRoom || !hasCamera);
    setToggle(this._hand, hand, icon('hand'), hand ? t('room.lower_hand') : t('room.raise_hand'), !inRoom);
    const sharing = Boolean(live.screen);
    const canShare = live.presenting && Boolean(navigator.mediaDevices?.getDisplayMedia);
    setToggle(this._share, sharing, icon('screen'), sharing ? t('room.stop_sharing') : t('room.share_screen'), !inRoom || (!sharing && !canShare));
    this._share.title = sharing || canShare ? '' : t('room.share_presenter_only');
    this._watching.hidden = !inRoom || hasMic || hasCamera;
  }

  /** Start sharing a screen (the browser asks which), or stop. */
  async _toggleShare() {
    const live = this._live;
    if (live.screen) {
      await live.setScreen(null).catch(reported);
      return;
    }
    this._share.disabled = true;
    const stream = await openScreen(live.caps.screen);
    this.render();
    if (stream) await live.setScreen(stream).catch(reported);
  }
}

/**
 * @param {HTMLButtonElement} button
 * @param {boolean} active
 * @param {SVGElement} symbol
 * @param {string} text what a click does
 * @param {boolean} disabled
 */
function setToggle(button, active, symbol, text, disabled) {
  button.replaceChildren(symbol, text);
  // The text says what a click does; the state is for styling (and tests).
  button.dataset.active = String(active);
  button.disabled = disabled;
}
