/**
 * Camera, microphone and screen: opening them, and the picker that switches to other devices.
 */

import { t } from '../i18n/index.js';
import { h, mount } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */

/** Faces at a board's size: 640×360 is plenty, and keeps the up-link light. */
const VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } };

/**
 * Open camera and microphone (the chosen devices, if any). Falls back to the microphone alone,
 * then to nothing: a participant without devices can still watch and listen.
 * @param {{videoId?: string, audioId?: string}} [choice]
 * @returns {Promise<MediaStream | null>}
 */
export async function openMedia({ videoId, audioId } = {}) {
  const audio = audioId ? { deviceId: { exact: audioId } } : true;
  const video = videoId ? { ...VIDEO, deviceId: { exact: videoId } } : VIDEO;
  if (!navigator.mediaDevices?.getUserMedia) return null;
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch {
    try {
      return await navigator.mediaDevices.getUserMedia({ audio });
    } catch {
      return null;
    }
  }
}

/**
 * Ask the browser for a screen, window or tab to share, captured at no more than the frame
 * rate the server allows a screen share; null if the user cancelled or the browser cannot.
 * @param {{maxFramerate: number}} caps
 * @returns {Promise<MediaStream | null>}
 */
export async function openScreen({ maxFramerate }) {
  if (!navigator.mediaDevices?.getDisplayMedia) return null;
  try {
    return await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { max: maxFramerate } }, audio: false });
  } catch {
    return null;
  }
}

/** Two selects, camera and microphone, listing the browser's devices. */
export class DevicePicker {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   */
  constructor(live, signal) {
    this._live = live;
    this._camera = h('select', { 'data-testid': 'room-device-camera', onchange: () => void this._switch() });
    this._mic = h('select', { 'data-testid': 'room-device-mic', onchange: () => void this._switch() });
    this._status = h('p', { class: 'hint', 'aria-live': 'polite' });
    this.el = h('details', { class: 'device-picker', 'data-testid': 'room-devices' },
      h('summary', { class: 'button-quiet' }, t('room.devices')),
      h('div', { class: 'device-fields' },
        h('label', { class: 'field' }, h('span', null, t('room.camera_device')), this._camera),
        h('label', { class: 'field' }, h('span', null, t('room.mic_device')), this._mic),
        this._status));
    this.el.addEventListener('toggle', () => { if (this.el.open) void this.refresh(); });
    navigator.mediaDevices?.addEventListener('devicechange', () => void this.refresh(), { signal });
  }

  /** List the devices, the ones in use selected. */
  async refresh() {
    const devices = await navigator.mediaDevices?.enumerateDevices() ?? [];
    const using = (/** @type {'audio'|'video'} */ kind) => {
      const track = kind === 'audio' ? this._live.local?.getAudioTracks()[0] : this._live.local?.getVideoTracks()[0];
      return track?.getSettings().deviceId ?? '';
    };
    fill(this._camera, devices.filter((d) => d.kind === 'videoinput'), using('video'), t('room.no_camera'));
    fill(this._mic, devices.filter((d) => d.kind === 'audioinput'), using('audio'), t('room.no_mic'));
  }

  async _switch() {
    this._status.textContent = '';
    const stream = await openMedia({ videoId: this._camera.value || undefined, audioId: this._mic.value || undefined });
    if (!stream) {
      this._status.textContent = t('room.device_failed');
      return;
    }
    try {
      await this._live.useStream(stream);
    } catch {
      this._status.textContent = t('room.device_failed');
    }
  }
}

/**
 * @param {HTMLSelectElement} select
 * @param {MediaDeviceInfo[]} devices
 * @param {string} selected deviceId in use
 * @param {string} none text when there is no device
 */
function fill(select, devices, selected, none) {
  mount(select, devices.length === 0
    ? h('option', { value: '' }, none)
    : devices.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === selected }, d.label || `${i + 1}`)));
  select.disabled = devices.length === 0;
}
