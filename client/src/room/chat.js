/**
 * The session's chat: the messages so far and a line to write a new one.
 */

import { reported } from '../protocol.js';
import { formatTime, t } from '../i18n/index.js';
import { viewerTimeZone } from '../api.js';
import { h, mount } from '../ui.js';

/** @typedef {import('../protocol.js').LiveClient} LiveClient */
/** @typedef {import('../protocol.js').ChatMessage} ChatMessage */

const MAX_LENGTH = 2000;

export class ChatPanel {
  /**
   * @param {LiveClient} live
   * @param {AbortSignal} signal
   */
  constructor(live, signal) {
    this._live = live;
    this._log = h('ol', { class: 'chat-log', 'aria-live': 'polite', 'data-testid': 'room-chat-log' });
    this._input = h('input', {
      type: 'text', maxlength: String(MAX_LENGTH), 'data-testid': 'room-chat-input',
      'aria-label': t('room.chat_message'), placeholder: t('room.chat_placeholder'), autocomplete: 'off',
    });
    const send = h('button', { type: 'submit', class: 'button-primary', 'data-testid': 'room-chat-send' }, t('room.chat_send'));
    const form = h('form', { class: 'chat-form', onsubmit: (/** @type {SubmitEvent} */ event) => {
      event.preventDefault();
      const text = this._input.value.trim();
      if (!text) return;
      send.disabled = true;
      live.say(text)
        .then(() => { this._input.value = ''; })
        .catch(reported)
        .finally(() => { send.disabled = false; this._input.focus(); });
    } }, this._input, send);
    this.el = h('section', { class: 'room-panel chat', 'aria-labelledby': 'room-chat-heading' },
      h('h2', { id: 'room-chat-heading' }, t('room.chat')), this._log, form);
    live.on('chat', (message) => this._append(message), signal);
    live.on('phase', (phase) => { if (phase === 'live') this.render(); }, signal);
    this.render();
  }

  /** All messages of the snapshot (on first show, and after a rejoin). */
  render() {
    mount(this._log, (this._live.snapshot?.chat ?? []).map((m) => this._message(m)));
    this._log.scrollTop = this._log.scrollHeight;
  }

  /** @param {ChatMessage} message */
  _append(message) {
    const atBottom = this._log.scrollHeight - this._log.scrollTop - this._log.clientHeight < 40;
    this._log.append(this._message(message));
    if (atBottom) this._log.scrollTop = this._log.scrollHeight;
  }

  /** @param {ChatMessage} message */
  _message(message) {
    return h('li', { class: `chat-message${message.from === this._live.you ? ' mine' : ''}`, 'data-testid': 'room-chat-message' },
      h('span', { class: 'chat-head' },
        h('span', { class: 'chat-name' }, message.name), ' ',
        h('time', { datetime: message.at, class: 'meta' }, formatTime(message.at, viewerTimeZone()))),
      h('span', { class: 'chat-text' }, message.text));
  }
}
