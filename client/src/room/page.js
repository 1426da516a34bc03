/**
 * The live session's room (`#/sessions/:id/room`): the presenter's shared screen, videos and
 * controls on the stage; agenda, lobby, participants and chat beside them. The viewer and note
 * panels of later features sit beside the videos too.
 *
 * The live connection outlasts a re-render of the page (a language switch) and ends when the
 * user goes elsewhere: the router holds it for as long as the path stays.
 */

import './room.css';
import { debugging } from '../debug.js';
import { LiveClient } from '../protocol.js';
import { label, t } from '../i18n/index.js';
import { h, mount } from '../ui.js';
import { AgendaPanel } from './agenda.js';
import { ChatPanel } from './chat.js';
import { ConnectionIndicator } from './connection.js';
import { Controls } from './controls.js';
import { openMedia } from './devices.js';
import { VideoGrid } from './grid.js';
import { LobbyPanel } from './lobby.js';
import { RoomNote } from './note.js';
import { ParticipantList } from './participants.js';
import { ScreenStage } from './stage.js';
import { ViewerPanel } from './viewer.js';
import { configuredRate, defaultRate } from '../viewer/prefetch.js';
import { waitedFrames } from '../viewer/waiting.js';

const PREFETCH_SHARE = 0.3; // of the link estimate, for images fetched ahead
const PREFETCH_FLOOR = 100_000; // bit/s

/** @typedef {import('../app.js').App} App */
/** @typedef {import('../types.js').Session} Session */
/** @typedef {import('../protocol.js').Phase} Phase */
/** @typedef {import('../protocol.js').EventError} EventError */

/**
 * What the router holds for the room: the live client, and the views of the latest render.
 * @typedef {object} Room
 * @property {LiveClient} live
 * @property {ViewerPanel} viewer the synchronised viewer (kept with its WebGL context and view)
 * @property {RoomNote} note the current case's consensus note (kept with its unsent edits)
 * @property {AbortController} life aborted when the user leaves the room
 * @property {AbortController | null} views
 */

/**
 * @param {App} app
 * @param {Record<string, string>} params `id`; `debug` (or `localStorage['eboard.debug']`) exposes
 *   the live client as `window.__eboard.live` and the current note's NoteSync as
 *   `window.__eboard.note`, for tests and support: they hold nothing the user could not see;
 *   `simulcast=off` publishes the camera in one layer instead of three
 */
export async function roomPage(app, { id, debug, simulcast }) {
  const path = app.router.path;
  // A path that names no session gets the server's answer, as on any other page.
  if (!/^\d+$/.test(id)) await app.api.get(`/sessions/${encodeURIComponent(id)}`);
  // Connect and join while the session's details load and the camera opens: over a 250 ms
  // link each round trip saved is a quarter of a second sooner in the room. A session the
  // user may not join is refused by the server as it would be after the load.
  const room = app.router.hold(() => startRoom(app, Number(id), simulcast !== 'off'), (held) => {
    held.views?.abort();
    held.life.abort();
    held.live.close('left');
    const hook = /** @type {any} */ (window).__eboard;
    if (hook?.live === held.live) delete (/** @type {any} */ (window).__eboard);
  });
  // The debug hook (tests, support): the live client, the viewer panel (its `viewer` is the
  // Viewer once opened) and the note of the current case.
  if (debug !== undefined || debugging()) {
    /** @type {any} */ (window).__eboard = { live: room.live, room: room.viewer, get note() { return room.note.sync; } };
  }
  /** @type {Session} */
  const session = await app.api.get(`/sessions/${id}`);
  if (app.router.path !== path) return h('section'); // the user went elsewhere meanwhile
  room.views?.abort();
  const views = new AbortController();
  room.views = views;
  return roomView(app, session, room, views.signal);
}

/**
 * Open camera and microphone, then connect and join.
 * @param {App} app
 * @param {number} sessionId
 * @param {boolean} simulcast
 * @returns {Room}
 */
function startRoom(app, sessionId, simulcast) {
  const live = new LiveClient(sessionId, { simulcast });
  const life = new AbortController();
  const viewer = new ViewerPanel(live, app.api, life.signal);
  // Prefetch yields to the call: once the server estimates this participant's link, images
  // are paced at a share of it (the media has the rest), at least PREFETCH_FLOOR; a rate set
  // in this browser wins.
  viewer.rate = () => {
    const kbps = live.quality?.estimate_kbps;
    const shared = kbps ? Math.max(PREFETCH_FLOOR, kbps * 1000 * PREFETCH_SHARE) : null;
    return configuredRate() ?? shared ?? defaultRate();
  };
  // A thin link carries the image the viewer waits for before the other tiles' video.
  waitedFrames.addEventListener('change', () => live.imagesFirst(waitedFrames.count > 0), { signal: life.signal });
  const note = new RoomNote(live, app, life.signal);
  /** @type {Promise<import('../protocol.js').IceServerInfo[] | null>} */
  const iceServers = app.api.get(`/sessions/${sessionId}/ice-servers`)
    .then((/** @type {{ice_servers: import('../protocol.js').IceServerInfo[]}} */ reply) => reply.ice_servers, () => null);
  live.start(openMedia(), iceServers);
  return { live, viewer, note, life, views: null };
}

/**
 * @param {App} app
 * @param {Session} session
 * @param {Room} room
 * @param {AbortSignal} signal
 */
function roomView(app, session, room, signal) {
  const live = room.live;
  const sessionPath = `/sessions/${session.id}`;
  const notice = h('div', { class: 'room-notice', 'data-testid': 'room-notice', 'aria-live': 'polite' });
  const errors = h('div', { class: 'room-errors', 'aria-live': 'assertive' });
  const el = h('section', { class: 'room', 'data-testid': 'room', 'data-session': session.id },
    h('div', { class: 'room-header' },
      h('div', null,
        h('p', { class: 'breadcrumb' },
          h('a', { href: '#/boards' }, t('nav.boards')), ' › ',
          h('a', { href: `#/boards/${session.board_id}` }, session.board_name), ' › ',
          h('a', { href: `#${sessionPath}` }, t('room.session'))),
        h('h1', null, t('room.title', { board: session.board_name }))),
      new ConnectionIndicator(live, signal).el),
    notice,
    errors,
    h('div', { class: 'room-body' },
      h('div', { class: 'room-stage' },
        room.viewer.el,
        new ScreenStage(live, signal).el,
        new VideoGrid(live, signal).el,
        new Controls(live, signal, () => app.navigate(sessionPath)).el),
      h('aside', { class: 'room-side' },
        new AgendaPanel(live, signal).el,
        room.note.el,
        new LobbyPanel(live, signal).el,
        new ParticipantList(live, signal).el,
        new ChatPanel(live, signal).el)));

  const showPhase = (/** @type {Phase} */ phase) => {
    el.dataset.phase = phase;
    mount(notice, phaseNotice(phase, sessionPath));
  };
  live.on('phase', showPhase, signal);
  showPhase(live.phase);
  live.on('error', (error) => showError(errors, error), signal);
  room.note.render(signal);
  return el;
}

/**
 * What the participant should know about where they are, or nothing while all is well.
 * @param {Phase} phase
 * @param {string} sessionPath
 */
function phaseNotice(phase, sessionPath) {
  const back = h('a', { href: `#${sessionPath}` }, t('room.back_to_session'));
  switch (phase) {
    case 'connecting': return h('p', { class: 'notice' }, t('room.connecting'));
    case 'lobby': return h('p', { class: 'notice', 'data-testid': 'room-lobby-wait' }, t('room.lobby_wait'));
    case 'reconnecting': return h('p', { class: 'notice' }, label('phase', 'reconnecting'));
    case 'kicked': return h('p', { class: 'notice danger' }, t('room.kicked'), ' ', back);
    case 'refused': return h('p', { class: 'notice danger' }, t('room.refused'), ' ', back);
    case 'left': return h('p', { class: 'notice' }, t('room.left'), ' ', back);
    default: return null;
  }
}

/**
 * Show one refused event (replacing the one before) for a while.
 * @param {HTMLElement} slot
 * @param {EventError} error
 */
function showError(slot, error) {
  const box = h('div', { class: 'alert', role: 'alert', 'data-testid': 'room-error', 'data-event': error.event },
    error.field ? `${error.message} (${error.field})` : error.message);
  mount(slot, box);
  setTimeout(() => box.remove(), 8000);
}
