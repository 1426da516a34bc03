/**
 * The live session's protocol: the socket.io connection to the `/board` namespace and the two
 * WebRTC peer connections of one participant (up: our microphone, camera and, while presenting,
 * screen to the server; down: everyone else's tracks from the server). No DOM access: the room
 * page (src/room/) shows what this reports and calls its methods.
 *
 * The up connection's m-sections are, in this order, microphone, camera and screen (the server
 * names up-tracks by that order: media/peer.py UP_TRACKS). Microphone and camera are there even
 * without the device, carrying no track: someone who cannot or will not send still publishes,
 * so the server sets up their down connection, and a device picked later is swapped in without
 * renegotiating. The down offer labels each section with the msid
 * `<participant> <participant>-<audio|video|screen>-<generation>` (media/room.py); a track the
 * publisher never sends stays muted, and the page shows no video for a muted track.
 *
 * The camera is published in three simulcast layers (CAMERA_LAYERS, low to high: 160×90,
 * 320×180, 640×360 from a 640×360 camera) so the server can forward each subscriber the layer
 * its link affords; a server whose answer does not take simulcast gets the one layer the
 * browser then keeps, and that layer is raised to the full picture (`fitCamera`). A screen share
 * stays one full-resolution encoding that gives up frames before pixels. The server tells each
 * participant what its own link affords and which of its down-tracks it forwards in full,
 * reduced or not at all (`media-quality`, kept in `quality`).
 *
 * Wire contract: schemas/events/*.json. ICE: each side's description is sent once the browser's
 * candidates come to a pause (host candidates take milliseconds; aiortc answers with all of its
 * own), or after GATHER_WAIT_MS with what is there so far, the rest trickled with `candidate`.
 * aiortc has no ICE restart, so a media connection that failed is replaced by a fresh one.
 */

import { io } from 'socket.io-client';

/** @typedef {'good'|'fair'|'poor'|'unknown'} Quality */

/**
 * A person in the live session (schemas/events/participant.json).
 * @typedef {object} Participant
 * @property {string} id "u" + user id; also the MediaStream id of their tracks on our down connection
 * @property {number} user_id
 * @property {string} name
 * @property {string} institution
 * @property {boolean} external
 * @property {'chair'|'specialist'|'observer'|'coordinator'} role
 * @property {string|null} specialty
 * @property {boolean} muted
 * @property {boolean} camera
 * @property {boolean} hand
 * @property {'lobby'|'connecting'|'connected'|'reconnecting'} connection
 * @property {Quality} quality
 */

/**
 * @typedef {object} AgendaEntry
 * @property {number} id agenda item id
 * @property {number} case_id
 * @property {string} case_number
 * @property {string} [clinical_question]
 * @property {number} timebox_minutes
 * @property {string} lane
 */

/**
 * @typedef {object} ChatMessage
 * @property {string} from participant id
 * @property {string} name
 * @property {string} text
 * @property {string} at ISO instant
 */

/**
 * The live state of a session (schemas/events/snapshot.json).
 * @typedef {object} Snapshot
 * @property {number} session_id
 * @property {number} board_id
 * @property {string} board_name
 * @property {Participant[]} participants
 * @property {string|null} chair
 * @property {string|null} presenter
 * @property {string|null} speaker
 * @property {{items: AgendaEntry[], current: number|null, current_started_at: string|null}} agenda
 * @property {ChatMessage[]} chat
 * @property {boolean} admission
 * @property {{seq: number, state: import('./viewsync.js').ViewState}} view the shared viewer's state
 */

/**
 * Why the server refused an event (schemas/events/error.json).
 * @typedef {object} EventError
 * @property {string} event
 * @property {string|null} field
 * @property {string} message
 */

/**
 * @typedef {object} IceServerInfo
 * @property {string[]} urls
 * @property {string|null} [username]
 * @property {string|null} [credential]
 */

/**
 * Where the participant is: `connecting` (first join), `lobby` (waiting to be admitted), `live`,
 * `reconnecting` (socket lost; the client comes back by itself), or an end: `left`, `kicked`
 * (joined again elsewhere), `refused` (the join or the connection was refused).
 * @typedef {'connecting'|'lobby'|'live'|'reconnecting'|'left'|'kicked'|'refused'} Phase
 */

/**
 * How the media connections fare, from getStats.
 * @typedef {object} Link
 * @property {Quality} quality
 * @property {number|null} rtt round-trip time in seconds
 * @property {number|null} loss fraction of packets lost since the last measurement
 * @property {RTCPeerConnectionState|'none'} up
 * @property {RTCPeerConnectionState|'none'} down
 */

/**
 * What the server asks this participant's role to send (RTCRtpEncodingParameters names).
 * @typedef {object} MediaCaps
 * @property {{maxBitrate: number, maxFramerate: number, maxHeight: number}} camera
 * @property {{maxBitrate: number, maxFramerate: number}} screen
 */

/**
 * What the server forwards to us, and what it estimates our link carries
 * (schemas/events/media-quality.json).
 * @typedef {object} MediaQuality
 * @property {number} estimate_kbps
 * @property {Record<string, TrackQuality>} tracks by down-track id `<participant>-<name>-<generation>`
 */

/** @typedef {'full'|'reduced'|'paused'} TrackQuality */

/**
 * The events a LiveClient dispatches (as CustomEvents, with this detail); listen with `on`.
 * @typedef {object} LiveEvents
 * @property {Phase} phase
 * @property {Snapshot} state anything in the snapshot changed
 * @property {ChatMessage} chat a new chat message (already in the snapshot)
 * @property {Participant[]} lobby who waits in the lobby (chairs only)
 * @property {Map<string, MediaStream>} streams remote streams (`remote`, `screens`) came or went,
 *   or one of their tracks was muted or unmuted
 * @property {MediaStream|null} local our own stream, mute or camera changed
 * @property {MediaStream|null} screen our screen share started or stopped
 * @property {Link} link
 * @property {MediaQuality} quality the server's latest word on our link and our down-tracks
 * @property {Relayed} relayed a server event that came on the down connection's data channel
 * @property {EventError} error
 */

/**
 * What the server sends on the down connection's data channel (`eboard`): an event it also
 * sends on the socket, relayed unordered and without retransmission, so that on a lossy link
 * it is not held up behind a lost packet (schemas/events/view-update.json).
 * @typedef {object} Relayed
 * @property {string} event
 * @property {any} data
 */

const GATHER_WAIT_MS = 1500;
const GATHER_SETTLE_MS = 40;
// How long the first join waits for the up connection offered ahead of it (see `start`).
const EARLY_WAIT_MS = 300;
// How long an admitted participant waits for the server's answer to the offer its join brought.
const UP_ANSWER_WAIT_MS = 10000;
const CALL_TIMEOUT_MS = 10000;
// A viewer done waiting for images says so this long after its last one arrived: scrolling
// through slices does not pause and resume the tiles with every slice.
const IMAGES_LINGER_MS = 1000;
const MEASURE_EVERY_MS = 2000;
// The largest data channel message read (the server sends at most 16 KiB).
const RELAY_MAX_CHARS = 65536;
// The websocket close code for a frame over the server's limit (RFC 6455 §7.4.1).
const MESSAGE_TOO_BIG = 1009;
/**
 * Used until the server's join reply says what this participant's role may send.
 * @type {MediaCaps}
 */
const DEFAULT_CAPS = {
  camera: { maxBitrate: 500_000, maxFramerate: 30, maxHeight: 360 },
  screen: { maxBitrate: 1_500_000, maxFramerate: 5 },
};
/**
 * The camera's simulcast layers, low to high (the order the server reads them in): each scaled
 * down from the role's top picture (maxHeight, 360 rows) by `scale`, and sent at up to
 * `maxBitrate` (never more than the role's own cap). From a 640×360 camera: q 160×90 at
 * 100 kbit/s, h 320×180 at 250 kbit/s, f 640×360 at the role's cap (500 kbit/s; 150 for an
 * observer). A thin link still gets a moving face from q; the stage gets h or f.
 */
const CAMERA_LAYERS = [
  { rid: 'q', scale: 4, maxBitrate: 100_000 },
  { rid: 'h', scale: 2, maxBitrate: 250_000 },
  { rid: 'f', scale: 1, maxBitrate: Infinity },
];

/**
 * An up connection offered, waiting for the server's answer.
 * @typedef {object} UpOffer
 * @property {RTCPeerConnection} pc
 * @property {string} sdp the offer, with the candidates gathered so far
 * @property {RTCIceCandidateInit[]} late candidates that missed it
 * @property {MediaStreamTrack | null} camera
 * @property {RTCRtpTransceiver} cameraSection
 * @property {RTCRtpTransceiver | null} screenSection
 * @property {boolean} layered whether the camera was offered in simulcast layers
 */

/** An event the server (or the connection) refused. */
export class LiveError extends Error {
  /** @param {EventError} error */
  constructor(error) {
    super(error.message);
    this.name = 'LiveError';
    this.event = error.event;
    this.field = error.field;
  }
}

/**
 * A `.catch` for the page's calls: a refusal has already been reported through the `error`
 * event (the page shows it); anything else is a bug and goes on.
 * @param {unknown} error
 */
export function reported(error) {
  if (!(error instanceof LiveError)) throw error;
}

/**
 * One participant's live session: socket, state, and media.
 */
export class LiveClient extends EventTarget {
  /**
   * @param {number} sessionId
   * @param {object} [options]
   * @param {string} [options.namespace] socket.io namespace URL, same origin by default
   * @param {boolean} [options.simulcast] publish the camera in three layers (the default), or in one
   */
  constructor(sessionId, { namespace = '/board', simulcast = true } = {}) {
    super();
    this.sessionId = sessionId;
    this.simulcast = simulcast;
    /**
     * Whether the server's last answer took our camera's layers (null before the first): one
     * that did not is sent one layer from then on, since a section without its SSRCs in the
     * offer is found by the server only while it is the one video section.
     * @type {boolean | null}
     */
    this.simulcastAnswered = null;
    /** @type {Phase} */
    this.phase = 'connecting';
    /** Our participant id, once joined. */
    this.you = '';
    /** @type {Snapshot | null} */
    this.snapshot = null;
    /** @type {Participant[]} */
    this.waiting = [];
    /** Remote microphone and camera streams by participant id (the down offer's msid stream). */
    this.remote = /** @type {Map<string, MediaStream>} */ (new Map());
    /** Remote screen shares by participant id. */
    this.screens = /** @type {Map<string, MediaStream>} */ (new Map());
    /** The down-track id (`<participant>-video-<generation>`) of each remote camera we receive. */
    this.cameraTracks = /** @type {Map<string, string>} */ (new Map());
    /** @type {MediaStream | null} our camera and microphone; null when we only watch */
    this.local = null;
    /** @type {MediaStream | null} the screen we share */
    this.screen = null;
    this.muted = false;
    this.camera = true;
    /** @type {Link} */
    this.link = { quality: 'unknown', rtt: null, loss: null, up: 'none', down: 'none' };
    /** @type {MediaQuality | null} the server's latest `media-quality`, null before the first */
    this.quality = null;
    /** How many joins succeeded (the first and every rejoin after a reconnect). */
    this.joins = 0;
    /** @type {RTCPeerConnection | null} */
    this.up = null;
    /** @type {RTCPeerConnection | null} */
    this.down = null;
    /** @type {IceServerInfo[]} */
    this._iceServers = [];
    /** @type {MediaCaps} */
    this.caps = DEFAULT_CAPS;
    /** Down negotiations run one after another, in the order the offers came. */
    this._downChain = Promise.resolve();
    /** Settles once `start`'s camera and microphone are known (`local`, null for none). */
    this._localReady = Promise.resolve();
    /** @type {Promise<UpOffer | null> | null} the up connection offered ahead of the first join */
    this._early = null;
    /** @type {UpOffer | null} that offer, while the server holds it for our admission */
    this._lobbyOffer = null;
    /** @type {Promise<void> | null} a media restart under way */
    this._restarting = null;
    /** @type {{lost: number, total: number}} packet counters at the last measurement */
    this._counters = { lost: 0, total: 0 };
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this._measuring = undefined;
    this._leaving = false;
    /** Whether the server was last told our viewer waits for images (`imagesFirst`). */
    this._imagesFirst = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} the pending "done waiting" */
    this._imagesDone = undefined;
    this.socket = io(namespace, {
      transports: ['websocket'],
      autoConnect: false,
      reconnectionDelay: 250,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0.3,
      timeout: 5000,
    });
    this._listen();
  }

  /**
   * Listen to one kind of event; the listener gets the event's detail.
   * @template {keyof LiveEvents} K
   * @param {K} type
   * @param {(detail: LiveEvents[K]) => void} listener
   * @param {AbortSignal} [signal] removes the listener when aborted
   */
  on(type, listener, signal) {
    this.addEventListener(type, (event) => listener(/** @type {CustomEvent<LiveEvents[K]>} */ (event).detail), { signal });
  }

  /**
   * Connect and join at once; publish the camera and microphone once admitted and `media` has
   * them. `media` may be a promise, so that joining does not wait for the devices (over a
   * trans-Pacific link the connection and the join take four round trips, a second). Without a
   * stream the participant only watches and listens (and still publishes, with no tracks).
   * `iceServers`, when given (the session's ICE servers, asked for over HTTP while the socket
   * connects), lets the up connection be offered before the join and published with it: one
   * round trip less to the first picture.
   * @param {MediaStream | null | Promise<MediaStream | null>} media
   * @param {Promise<IceServerInfo[] | null>} [iceServers]
   */
  start(media, iceServers) {
    this._localReady = Promise.resolve(media).then((stream) => {
      if (this._ended()) {
        for (const track of stream?.getTracks() ?? []) track.stop();
        return;
      }
      this.local = stream;
      this._emit('local', stream);
    });
    if (iceServers) {
      this._early = Promise.all([this._localReady, iceServers]).then(([, servers]) => {
        if (!servers || this.joins > 0 || this._ended()) return null;
        this._iceServers = servers;
        return this._offerUpConnection(this._peer('up'));
      }).catch(() => null);
    }
    this.socket.connect();
  }

  /** Our own entry in the live state, once admitted. */
  get me() {
    return this.snapshot?.participants.find((p) => p.id === this.you) ?? null;
  }

  /** Whether we may run the session: move the agenda, hand over presenting, admit. */
  get chairs() {
    const role = this.me?.role;
    return role === 'chair' || role === 'coordinator';
  }

  /** Whether the chair made us the presenter, who alone may share a screen. */
  get presenting() {
    return this.you !== '' && this.snapshot?.presenter === this.you;
  }

  // -- what the participant does ----------------------------------------------------------

  /** @param {boolean} muted */
  async setMuted(muted) {
    this.muted = muted;
    for (const track of this.local?.getAudioTracks() ?? []) track.enabled = !muted;
    this._emit('local', this.local);
    await this._call('media-state', { muted });
  }

  /** @param {boolean} on */
  async setCamera(on) {
    this.camera = on;
    for (const track of this.local?.getVideoTracks() ?? []) track.enabled = on;
    this._emit('local', this.local);
    await this._call('media-state', { camera: on });
  }

  /**
   * Send from other devices: the new stream's tracks replace the old ones in the up
   * connection's microphone and camera sections (no renegotiation, so nobody else's view
   * flickers); an up connection that is not connected is published afresh.
   * @param {MediaStream} stream
   */
  async useStream(stream) {
    const old = this.local;
    this.local = stream;
    for (const track of stream.getAudioTracks()) track.enabled = !this.muted;
    for (const track of stream.getVideoTracks()) track.enabled = this.camera;
    this._emit('local', stream);
    const [microphone, camera] = this.up?.getTransceivers() ?? [];
    if (this.up?.connectionState === 'connected' && microphone && camera) {
      await microphone.sender.replaceTrack(stream.getAudioTracks()[0] ?? null);
      const video = stream.getVideoTracks()[0] ?? null;
      await camera.sender.replaceTrack(video);
      if (video) await fitCamera(camera.sender, this.caps.camera, video);
    } else if (this.phase === 'live') {
      await this._publish();
    }
    if (old && old !== stream) for (const track of old.getTracks()) track.stop();
    if (this.phase === 'live') await this._call('media-state', this._mediaState());
  }

  /**
   * Presenter: share a screen (a `getDisplayMedia` stream), or stop sharing (null). Either way
   * the up connection is published afresh (microphone, camera, screen): the server takes the
   * second publish as a replacement, and everyone's down connection swaps our tracks in one
   * renegotiation.
   * @param {MediaStream | null} stream
   */
  async setScreen(stream) {
    const old = this.screen;
    if (stream === old) return;
    const track = stream?.getVideoTracks()[0];
    if (stream && (!track || !this.presenting)) {
      for (const t of stream.getTracks()) t.stop();
      const error = { event: 'publish', field: null, message: 'only the presenter shares a screen' };
      this._emit('error', error);
      throw new LiveError(error);
    }
    if (stream && track) {
      // Slides, reports and scans: keep every pixel sharp and give up frames instead.
      track.contentHint = 'detail';
      // The browser's own "stop sharing" ends the track.
      track.addEventListener('ended', () => {
        if (this.screen === stream) void this.setScreen(null).catch(reported);
      });
    }
    this.screen = stream;
    this._emit('screen', stream);
    try {
      if (this.phase === 'live') await this._publish();
    } finally {
      for (const t of old?.getTracks() ?? []) t.stop();
    }
  }

  /**
   * Our viewer waits for an image (`on`) or no longer. The server then sends us the stage's
   * video alone, so the image has the rest of a thin link (`schemas/events/images-first.json`).
   * "Done" is told `IMAGES_LINGER_MS` after the last image, and only in a live session: a
   * rejoin starts with all video anyway. Nothing waits for the reply; a refusal is reported as
   * the `error` event.
   * @param {boolean} on
   */
  imagesFirst(on) {
    clearTimeout(this._imagesDone);
    this._imagesDone = undefined;
    const tell = (/** @type {boolean} */ value) => {
      if (this._imagesFirst === value) return;
      if (this.phase !== 'live' || !this.socket.connected) {
        this._imagesFirst = false;
        return;
      }
      this._imagesFirst = value;
      this.socket.emit('images-first', { on: value });
    };
    if (on) tell(true);
    else if (this._imagesFirst) this._imagesDone = setTimeout(() => tell(false), IMAGES_LINGER_MS);
  }

  /** @param {boolean} raised */
  async raiseHand(raised) {
    await this._call('hand', { raised });
  }

  /** @param {string} text */
  async say(text) {
    await this._call('chat', { text });
  }

  /**
   * Chair: make an agenda item current (null: no case under discussion).
   * @param {number | null} itemId
   */
  async moveAgenda(itemId) {
    await this._call('agenda', { item_id: itemId });
  }

  /**
   * Chair: hand presenting to a participant (null: nobody).
   * @param {string | null} participant
   */
  async present(participant) {
    await this._call('presenter', { participant });
  }

  /**
   * Chair: admit someone waiting in the lobby.
   * @param {string} participant
   */
  async admit(participant) {
    await this._call('admit', { participant });
  }

  /** Leave the session: tell the server, then close everything. */
  async leave() {
    this._leaving = true;
    if (this.socket.connected && (this.phase === 'live' || this.phase === 'lobby')) {
      try {
        await this._call('leave', {});
      } catch {
        // closing either way; the server's grace period covers a leave that did not arrive
      }
    }
    this.close('left');
  }

  /**
   * Close the socket and both media connections and stop our camera and microphone.
   * @param {Phase} [phase]
   */
  close(phase = 'left') {
    this._stopMedia();
    for (const track of this.local?.getTracks() ?? []) track.stop();
    for (const track of this.screen?.getTracks() ?? []) track.stop();
    this._setPhase(phase);
    this.socket.disconnect();
  }

  // -- socket -----------------------------------------------------------------------------

  _listen() {
    const socket = this.socket;
    socket.on('connect', () => void this._join());
    socket.on('disconnect', (reason, details) => {
      if (this._ended()) return;
      if (closeCode(details) === MESSAGE_TOO_BIG) {
        // The server reads no websocket frame over its limit: it closed the socket instead.
        this._emit('error', { event: 'message', field: null, message: 'a message was larger than the server accepts (1 MiB): reconnecting' });
      }
      if (reason === 'io server disconnect') {
        // The server closed this connection without a `kicked` first: try again.
        socket.connect();
      }
      this._setPhase('reconnecting');
    });
    socket.on('connect_error', (error) => {
      // A refusal by the server (not logged in) is final; anything else is retried by itself.
      if (!socket.active) {
        this._emit('error', { event: 'connect', field: null, message: error.message });
        this._setPhase('refused');
      }
    });
    socket.on('state', (/** @type {Snapshot} */ snapshot) => {
      const wasWaiting = this.phase === 'lobby';
      this._setSnapshot(snapshot);
      if (wasWaiting && this.me) {
        // Admitted from the lobby: the server sends the state to the one it admitted, and
        // publishes the offer our join brought (`up-answer` follows), if it did.
        this._setPhase('live');
        if (this._lobbyOffer) {
          const offered = this._lobbyOffer;
          setTimeout(() => { if (this._lobbyOffer === offered) this._adoptLobbyOffer(null); }, UP_ANSWER_WAIT_MS);
        } else {
          void this._ensureMedia(false);
        }
      }
    });
    socket.on('up-answer', (/** @type {{sdp: string | null}} */ { sdp }) => void this._adoptLobbyOffer(sdp));
    socket.on('participant', (/** @type {Participant} */ person) => {
      if (!this.snapshot) return;
      const others = this.snapshot.participants.filter((p) => p.id !== person.id);
      this.waiting = this.waiting.filter((p) => p.id !== person.id);
      this._setSnapshot({ ...this.snapshot, participants: [...others, person] });
    });
    socket.on('participant-left', (/** @type {{id: string, reason: string}} */ { id }) => {
      if (id === this.you && this.phase === 'live' && !this._leaving) {
        // The server let us go (our media failed or timed out) while the socket stayed up.
        void this._rejoin();
        return;
      }
      const gone = [this.remote.delete(id), this.screens.delete(id)];
      if (gone.some(Boolean)) this._emit('streams', this.remote);
      if (!this.snapshot) return;
      const snapshot = this.snapshot;
      this._setSnapshot({
        ...snapshot,
        participants: snapshot.participants.filter((p) => p.id !== id),
        presenter: snapshot.presenter === id ? null : snapshot.presenter,
        speaker: snapshot.speaker === id ? null : snapshot.speaker,
      });
    });
    socket.on('speaker', (/** @type {{participant: string}} */ { participant }) => {
      if (this.snapshot) this._setSnapshot({ ...this.snapshot, speaker: participant });
    });
    socket.on('chat-message', (/** @type {ChatMessage} */ message) => {
      if (this.snapshot) this.snapshot = { ...this.snapshot, chat: [...this.snapshot.chat, message] };
      this._emit('chat', message);
    });
    socket.on('lobby', (/** @type {{waiting: Participant[]}} */ { waiting }) => {
      this.waiting = waiting;
      this._emit('lobby', waiting);
    });
    socket.on('down-offer', (/** @type {{sdp: string}} */ { sdp }) => {
      this._downChain = this._downChain.then(() => this._answerDown(sdp)).catch((error) => this._mediaFailed('answer', error));
    });
    socket.on('media-quality', (/** @type {MediaQuality} */ quality) => {
      this.quality = quality;
      this._emit('quality', quality);
    });
    socket.on('media-reset', () => {
      // The server's media process restarted and our connections there are gone; the socket
      // and our place in the session are not. Publish afresh on new peer connections.
      if (this._ended() || this.phase !== 'live') return;
      this.up?.close();
      this.up = null;
      void this._ensureMedia(true);
    });
    socket.on('kicked', (/** @type {{reason: string}} */ { reason }) => {
      this._emit('error', { event: 'kicked', field: null, message: reason });
      this.close('kicked');
    });
    socket.on('error', (/** @type {EventError} */ error) => this._emit('error', error));
  }

  /** Join (or, after a reconnect, join again) and bring the media up. */
  async _join() {
    // The first join carries the up connection's offer when it is ready (see `start`).
    const offered = this.joins === 0 ? await this._takeEarly() : null;
    /** @type {{you: string, admitted: boolean, resumed: boolean, snapshot: Snapshot, ice_servers: IceServerInfo[], media_caps?: Partial<MediaCaps>, answer?: string}} */
    let ack;
    try {
      const offer = offered ? { offer: { sdp: offered.sdp, type: 'offer' } } : {};
      ack = await this._call('join', { session_id: this.sessionId, ...offer });
    } catch {
      offered?.pc.close();
      // Refused (not invited, session over or cancelled): final. A socket lost meanwhile
      // connects again by itself and this runs once more.
      if (this.socket.connected) this.close('refused');
      return;
    }
    this.joins += 1;
    this.you = ack.you;
    this._iceServers = ack.ice_servers;
    this.caps = { ...DEFAULT_CAPS, ...ack.media_caps };
    this._setSnapshot(ack.snapshot);
    this._setPhase(ack.admitted ? 'live' : 'lobby');
    if (offered && !ack.admitted) {
      // The server publishes it when the chair admits us (`up-answer`).
      this._lobbyOffer = offered;
      return;
    }
    if (offered && !ack.resumed) {
      // Published with the join (no answer: refused, published again the usual way).
      await this._adoptOffer(offered, ack.answer ?? null);
      return;
    }
    offered?.pc.close();
    // The server says whether our media outlived the reconnect; if not, start it afresh.
    if (ack.admitted) await this._ensureMedia(!ack.resumed);
  }

  /**
   * The server's answer to the offer our join brought into the lobby (null: refused, or none
   * came in time).
   * @param {string | null} answer
   */
  async _adoptLobbyOffer(answer) {
    const offered = this._lobbyOffer;
    this._lobbyOffer = null;
    if (offered) await this._adoptOffer(offered, answer);
  }

  /**
   * The server answered the up connection our join offered (null: it refused it): adopt that
   * connection, or publish afresh the usual way.
   * @param {UpOffer} offered
   * @param {string | null} answer
   */
  async _adoptOffer(offered, answer) {
    if (this._ended()) {
      offered.pc.close();
      return;
    }
    if (answer && !this.up) {
      this.up = offered.pc;
      try {
        await this._acceptUp(offered, answer);
      } catch (error) {
        this._mediaFailed('publish', error);
        return;
      }
    } else {
      offered.pc.close();
    }
    await this._ensureMedia(false);
  }

  /**
   * The up connection offered ahead of the first join, if it is ready within EARLY_WAIT_MS
   * (a camera still asking for permission does not hold the join); taken once.
   * @returns {Promise<UpOffer | null>}
   */
  async _takeEarly() {
    const early = this._early;
    this._early = null;
    if (!early) return null;
    /** @type {Promise<null>} */
    const late = new Promise((resolve) => { setTimeout(() => resolve(null), EARLY_WAIT_MS); });
    const offered = await Promise.race([early, late]);
    if (!offered) void early.then((made) => made?.pc.close()); // too late: joined without it
    return offered;
  }

  /**
   * The server let our participant go (its media failed or timed out) while the socket stayed
   * up. That socket's join is spent, so join again on a new one, with fresh media.
   */
  _rejoin() {
    this._stopMedia();
    this._setPhase('reconnecting');
    this.socket.disconnect();
    this.socket.connect();
  }

  /**
   * Send an event and wait for its acknowledgement.
   * @param {string} event
   * @param {unknown} data
   * @returns {Promise<any>} the acknowledgement, when `ok`
   */
  async _call(event, data) {
    if (!this.socket.connected) {
      const error = { event, field: null, message: 'not connected to the live session' };
      this._emit('error', error);
      throw new LiveError(error);
    }
    let ack;
    try {
      ack = await this.socket.timeout(CALL_TIMEOUT_MS).emitWithAck(event, data);
    } catch {
      const error = { event, field: null, message: 'the server did not answer in time' };
      this._emit('error', error);
      throw new LiveError(error);
    }
    // The server also sends an `error` event for every refusal, which the page shows.
    if (!ack?.ok) throw new LiveError(ack?.error ?? { event, field: null, message: 'refused' });
    return ack;
  }

  // -- media ------------------------------------------------------------------------------

  /**
   * After a join: keep media connections that are up; replace what is not (aiortc has no ICE
   * restart, so a connection that failed is replaced rather than repaired).
   * @param {boolean} stale whether the server no longer holds our media connections
   */
  async _ensureMedia(stale) {
    const fresh = stale || !this.up || !healthy(this.up) || (this.down !== null && !healthy(this.down));
    try {
      if (fresh) {
        await this._localReady;
        if (this._ended()) return;
        // The server offers a new down connection when a participant publishes afresh.
        this._closeDown();
        await this._publish();
      }
      // After every join: a rejoin may have reset what the server knew of us.
      await this._call('media-state', { ...this._mediaState(), quality: this.link.quality });
    } catch (error) {
      this._mediaFailed('publish', error);
    }
    this._startMeasuring();
  }

  /** What we send, as the live state shows it: a missing device counts as off. */
  _mediaState() {
    return {
      muted: this.muted || !this.local?.getAudioTracks().length,
      camera: this.camera && Boolean(this.local?.getVideoTracks().length),
    };
  }

  /**
   * A fresh up connection: microphone, camera (each with or without a track) and the screen
   * we share, in that order; offer, wait for candidates, send, apply the answer.
   */
  async _publish() {
    // Make before break: the old up connection sends until the server has this one. Closed
    // first, it would reach the server as a participant who left, not as a replacement.
    const old = this.up;
    const pc = this._peer('up');
    this.up = pc;
    /** @type {string} */
    let answer;
    /** @type {UpOffer} */
    let offered;
    try {
      offered = await this._offerUpConnection(pc);
      answer = (await this._call('publish', { sdp: offered.sdp, type: 'offer' })).sdp;
    } finally {
      old?.close();
    }
    if (pc !== this.up) return; // replaced meanwhile
    await this._acceptUp(offered, answer);
  }

  /**
   * Offer `pc` (a fresh up connection): microphone, camera (each with or without a track) and
   * the screen we share, in that order; resolves once its candidates are in.
   * @param {RTCPeerConnection} pc
   * @returns {Promise<UpOffer>}
   */
  async _offerUpConnection(pc) {
    const streams = this.local ? [this.local] : [];
    const microphone = this.local?.getAudioTracks()[0] ?? null;
    const camera = this.local?.getVideoTracks()[0] ?? null;
    pc.addTransceiver(microphone ?? 'audio', { direction: 'sendonly', streams });
    const layered = this.simulcast && this.simulcastAnswered !== false;
    const cameraSection = pc.addTransceiver(camera ?? 'video', {
      direction: 'sendonly',
      streams,
      // A board needs faces, not film: keep a camera under the role's cap, in three layers.
      sendEncodings: layered ? cameraLayers(this.caps.camera, camera) : [cameraEncoding(this.caps.camera, camera)],
    });
    const screen = this.screen?.getVideoTracks()[0];
    /** @type {RTCRtpTransceiver | null} */
    let screenSection = null;
    if (this.screen && screen) {
      const { maxBitrate, maxFramerate } = this.caps.screen;
      screenSection = pc.addTransceiver(screen, { direction: 'sendonly', streams: [this.screen], sendEncodings: [{ maxBitrate, maxFramerate }] });
    }
    await pc.setLocalDescription(await pc.createOffer());
    const { sdp, late } = await this._described(pc);
    return { pc, sdp, late, camera, cameraSection, screenSection, layered };
  }

  /**
   * Apply the server's answer to an up connection we offered.
   * @param {UpOffer} offered
   * @param {string} answer
   */
  async _acceptUp(offered, answer) {
    const { pc, late, camera, cameraSection, screenSection, layered } = offered;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    this._trickle(pc, 'up', late);
    if (layered) this.simulcastAnswered = /^a=simulcast:/m.test(answer);
    // An answer without simulcast leaves the first (smallest) layer alone: make it the full one.
    // (This also brings each layer under the caps of the role the join reply named.)
    if (camera) await fitCamera(cameraSection.sender, this.caps.camera, camera);
    // Slides and scans stay sharp on a thin link: the encoder drops frames, not pixels.
    if (screenSection) await keepResolution(screenSection.sender);
  }

  /**
   * Answer the server's (re)offer for the down connection. A new ICE user fragment means the
   * server made a fresh connection, so a fresh one answers it.
   * @param {string} sdp
   */
  async _answerDown(sdp) {
    if (this._ended()) return;
    if (!this.down || this.down.signalingState === 'closed' || iceUfrag(sdp) !== iceUfrag(this.down.remoteDescription?.sdp)) {
      this._closeDown();
      this.down = this._peer('down');
      this.down.ondatachannel = ({ channel }) => this._relay(channel);
    }
    const pc = this.down;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription();
    this._groupStreams(pc, sdp);
    const { sdp: answer, late } = await this._described(pc);
    await this._call('answer', { sdp: answer, type: 'answer' });
    this._trickle(pc, 'down', late);
  }

  /**
   * Read the server's data channel: each message is `{event, data}`, passed on as `relayed`.
   * Anything else on it, or on a channel of another name, is ignored.
   * @param {RTCDataChannel} channel
   */
  _relay(channel) {
    if (channel.label !== 'eboard') return;
    channel.onmessage = ({ data }) => {
      if (typeof data !== 'string' || data.length > RELAY_MAX_CHARS) return;
      let message;
      try {
        message = JSON.parse(data);
      } catch {
        return;
      }
      if (typeof message?.event === 'string' && message.data && typeof message.data === 'object') {
        this._emit('relayed', { event: message.event, data: message.data });
      }
    };
  }

  /**
   * Group what the down connection `pc` receives by participant, from the msid labels of the
   * offer just answered: microphone and camera into `remote`, screen into `screens`. A stream
   * object stays while its tracks do, so the page's videos play on undisturbed.
   * @param {RTCPeerConnection} pc
   * @param {string} offer
   */
  _groupStreams(pc, offer) {
    const labels = msidLabels(offer);
    /** @type {Map<string, MediaStreamTrack[]>} */
    const media = new Map();
    /** @type {Map<string, MediaStreamTrack[]>} */
    const screens = new Map();
    this.cameraTracks.clear();
    for (const transceiver of pc.getTransceivers()) {
      const label = labels.get(transceiver.mid ?? '');
      const receiving = transceiver.currentDirection === 'recvonly' || transceiver.currentDirection === 'sendrecv';
      if (!label || !receiving) continue;
      const track = transceiver.receiver.track;
      // Muted until its first packet: the page shows no video for a track that never sends.
      track.onmute = () => this._emit('streams', this.remote);
      track.onunmute = track.onmute;
      if (label.name === 'video') this.cameraTracks.set(label.participant, label.track);
      const group = label.name === 'screen' ? screens : media;
      group.set(label.participant, [...(group.get(label.participant) ?? []), track]);
    }
    const changed = [updateStreams(this.remote, media), updateStreams(this.screens, screens)];
    if (changed.some(Boolean)) this._emit('streams', this.remote);
  }

  /**
   * A peer connection that reports its state and restarts media when it fails.
   * @param {'up'|'down'} direction
   */
  _peer(direction) {
    const pc = new RTCPeerConnection({
      iceServers: this._iceServers.map((s) => ({ urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined })),
      bundlePolicy: 'max-bundle',
    });
    pc.onconnectionstatechange = () => {
      const current = direction === 'up' ? this.up : this.down;
      if (pc !== current) return;
      this.link = { ...this.link, [direction]: pc.connectionState };
      this._emit('link', this.link);
      if (pc.connectionState === 'failed') this._mediaFailed(direction, new Error(`${direction} connection failed`));
    };
    return pc;
  }

  /**
   * The local description once ICE gathering completed or paused (`gathered`), or after
   * GATHER_WAIT_MS, with the candidates so far; those gathered later are kept for `_trickle`.
   * @param {RTCPeerConnection} pc
   * @returns {Promise<{sdp: string, late: RTCIceCandidateInit[]}>}
   */
  async _described(pc) {
    await gathered(pc, GATHER_WAIT_MS);
    const sdp = pc.localDescription?.sdp;
    if (!sdp) throw new Error('no local description');
    /** @type {RTCIceCandidateInit[]} */
    const late = [];
    pc.onicecandidate = ({ candidate }) => {
      if (candidate?.candidate) late.push(candidate.toJSON());
    };
    return { sdp, late };
  }

  /**
   * Once the server holds our description: send the candidates that missed it, and any to come.
   * @param {RTCPeerConnection} pc
   * @param {'up'|'down'} direction
   * @param {RTCIceCandidateInit[]} late
   */
  _trickle(pc, direction, late) {
    const send = (/** @type {RTCIceCandidateInit} */ c) => {
      const candidate = { candidate: c.candidate ?? '', sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null };
      void this._call('candidate', { direction, candidate }).catch(() => {});
    };
    for (const c of late.splice(0)) send(c);
    pc.onicecandidate = ({ candidate }) => {
      if (candidate?.candidate) send(candidate.toJSON());
    };
  }

  /**
   * A media step failed: report it, and if the socket is fine, start media afresh (once at a time).
   * @param {string} event
   * @param {unknown} error
   */
  _mediaFailed(event, error) {
    if (!(error instanceof LiveError)) {
      this._emit('error', { event, field: null, message: error instanceof Error ? error.message : String(error) });
    }
    if (this._ended() || this.phase !== 'live' || !this.socket.connected || this._restarting) return;
    if (event !== 'up' && event !== 'down') return; // refusals are reported, not retried
    this._restarting = (async () => {
      this._closeDown();
      try {
        await this._publish();
      } catch (failure) {
        if (!(failure instanceof LiveError)) this._emit('error', { event: 'publish', field: null, message: String(failure) });
      }
    })().finally(() => { this._restarting = null; });
  }

  _closeDown() {
    this.down?.close();
    this.down = null;
    this.cameraTracks.clear();
    if (this.remote.size || this.screens.size) {
      this.remote.clear();
      this.screens.clear();
      this._emit('streams', this.remote);
    }
  }

  _stopMedia() {
    clearInterval(this._measuring);
    this._measuring = undefined;
    this._lobbyOffer?.pc.close();
    this._lobbyOffer = null;
    this.up?.close();
    this.up = null;
    this._closeDown();
  }

  // -- connection quality -----------------------------------------------------------------

  _startMeasuring() {
    if (this._measuring !== undefined) return;
    this._measuring = setInterval(() => void this._measure(), MEASURE_EVERY_MS);
  }

  /** Round-trip time and packet loss of both connections; the grade goes to the server when it changes. */
  async _measure() {
    let rtt = /** @type {number|null} */ (null);
    let lost = 0;
    let total = 0;
    for (const pc of [this.up, this.down]) {
      if (!pc || pc.connectionState === 'closed') continue;
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && typeof s.currentRoundTripTime === 'number') {
          rtt = Math.max(rtt ?? 0, s.currentRoundTripTime);
        } else if (s.type === 'inbound-rtp') {
          lost += Math.max(0, s.packetsLost ?? 0);
          total += (s.packetsReceived ?? 0) + Math.max(0, s.packetsLost ?? 0);
        } else if (s.type === 'remote-inbound-rtp') {
          lost += Math.max(0, s.packetsLost ?? 0);
        } else if (s.type === 'outbound-rtp') {
          total += s.packetsSent ?? 0;
        }
      });
    }
    const dLost = Math.max(0, lost - this._counters.lost);
    const dTotal = Math.max(0, total - this._counters.total);
    this._counters = { lost, total };
    const loss = dTotal > 0 ? Math.min(1, dLost / dTotal) : null;
    const quality = grade(rtt, loss);
    const before = this.link.quality;
    this.link = {
      quality, rtt, loss, up: this.up?.connectionState ?? 'none', down: this.down?.connectionState ?? 'none',
    };
    this._emit('link', this.link);
    if (quality !== before && this.phase === 'live' && this.socket.connected) {
      await this._call('media-state', { quality }).catch(() => {});
    }
  }

  // -- plumbing ---------------------------------------------------------------------------

  /** @param {Snapshot} snapshot */
  _setSnapshot(snapshot) {
    this.snapshot = snapshot;
    this._emit('state', snapshot);
    // Presenting was handed on: our screen share goes with it.
    if (this.screen && !this.presenting) void this.setScreen(null).catch(reported);
  }

  /** @param {Phase} phase */
  _setPhase(phase) {
    if (this.phase === phase) return;
    this.phase = phase;
    if (phase !== 'live') this._imagesFirst = false; // a rejoin starts with every video
    this._emit('phase', phase);
  }

  _ended() {
    return this.phase === 'left' || this.phase === 'kicked' || this.phase === 'refused';
  }

  /**
   * @template {keyof LiveEvents} K
   * @param {K} type
   * @param {LiveEvents[K]} detail
   */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * The websocket close code behind a disconnect, when the transport closed with one.
 * @param {unknown} details socket.io's disconnect description ({description, context: CloseEvent})
 * @returns {number|undefined}
 */
function closeCode(details) {
  const context = /** @type {{context?: {code?: unknown}}} */ (details ?? {}).context;
  return typeof context?.code === 'number' ? context.code : undefined;
}

/** @param {RTCPeerConnection} pc */
function healthy(pc) {
  return pc.connectionState === 'connected' || pc.connectionState === 'connecting' || pc.connectionState === 'new';
}

/**
 * Resolve when `pc` has gathered all its candidates, when its candidates have come to a pause
 * (none for GATHER_SETTLE_MS after at least one), or after `ms`. Chromium finds its host
 * candidates within milliseconds but says gathering is complete only ~130 ms later, and a
 * server-reflexive or relay candidate takes a round trip to the STUN or TURN server: on a
 * 250 ms link, waiting for all of them delays the first picture by a round trip or two. What
 * comes after the pause is trickled (`_trickle`).
 * @param {RTCPeerConnection} pc
 * @param {number} ms
 * @returns {Promise<void>}
 */
function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let settle;
    const done = () => {
      clearTimeout(timer);
      clearTimeout(settle);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', found);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const found = (/** @type {RTCPeerConnectionIceEvent} */ { candidate }) => {
      if (!candidate?.candidate) return;
      clearTimeout(settle);
      settle = setTimeout(done, GATHER_SETTLE_MS);
    };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', found);
  });
}

/**
 * The server's label of each m-section of a down offer, by mid: whose track it is and what it
 * carries (`audio`, `video` for the camera, `screen`), from `a=msid:<participant>
 * <participant>-<name>-<generation>`.
 * @param {string} sdp
 * @returns {Map<string, {participant: string, name: string, track: string}>}
 */
function msidLabels(sdp) {
  const labels = new Map();
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = /^a=mid:(\S+)/m.exec(section)?.[1];
    const msid = /^a=msid:(\S+) (\S+)/m.exec(section);
    if (mid === undefined || !msid) continue;
    const name = /-(audio|video|screen)-\d+$/.exec(msid[2])?.[1] ?? 'video';
    labels.set(mid, { participant: msid[1], name, track: msid[2] });
  }
  return labels;
}

/**
 * Make `streams` hold, for each key of `tracks`, a stream of exactly those tracks, keeping the
 * stream objects whose tracks did not change; return whether anything changed.
 * @param {Map<string, MediaStream>} streams
 * @param {Map<string, MediaStreamTrack[]>} tracks
 */
function updateStreams(streams, tracks) {
  let changed = false;
  for (const key of [...streams.keys()]) {
    if (tracks.has(key)) continue;
    streams.delete(key);
    changed = true;
  }
  for (const [key, wanted] of tracks) {
    const had = streams.get(key)?.getTracks() ?? [];
    if (had.length === wanted.length && wanted.every((track) => had.includes(track))) continue;
    streams.set(key, new MediaStream(wanted));
    changed = true;
  }
  return changed;
}

/**
 * Fit a camera sender's encodings to `track` under the role's caps: every simulcast layer at its
 * scale, or, when the answer left a single encoding, that one at the full picture and the cap.
 * @param {RTCRtpSender} sender
 * @param {MediaCaps['camera']} caps
 * @param {MediaStreamTrack} track
 */
async function fitCamera(sender, caps, track) {
  const parameters = sender.getParameters();
  const layers = cameraLayers(caps, track);
  const single = cameraEncoding(caps, track);
  parameters.encodings = parameters.encodings.length === 1
    ? [{ ...parameters.encodings[0], ...single }]
    : parameters.encodings.map((e) => {
      const { rid: _, ...layer } = layers.find((l) => l.rid === e.rid) ?? { ...single, rid: e.rid };
      return { ...e, ...layer };
    });
  await sender.setParameters(parameters);
}

/**
 * Ask the encoder of a screen share to keep its resolution and lower its frame rate when the
 * link narrows. A browser without the setting keeps its own default (`contentHint: 'detail'`
 * asks for the same).
 * @param {RTCRtpSender} sender
 */
async function keepResolution(sender) {
  const parameters = /** @type {RTCRtpSendParameters & {degradationPreference?: string}} */ (sender.getParameters());
  parameters.degradationPreference = 'maintain-resolution';
  try {
    await sender.setParameters(parameters);
  } catch {
    // unsupported here: contentHint 'detail' alone
  }
}

/**
 * The first `a=ice-ufrag` of a session description.
 * @param {string | undefined} sdp
 */
function iceUfrag(sdp) {
  return /^a=ice-ufrag:(\S+)/m.exec(sdp ?? '')?.[1] ?? null;
}

/**
 * @param {number | null} rtt seconds
 * @param {number | null} loss fraction
 * @returns {Quality}
 */
function grade(rtt, loss) {
  if (rtt === null && loss === null) return 'unknown';
  const r = rtt ?? 0;
  const l = loss ?? 0;
  if (r < 0.2 && l < 0.02) return 'good';
  if (r < 0.5 && l < 0.08) return 'fair';
  return 'poor';
}

/**
 * The camera's simulcast send encodings (CAMERA_LAYERS) under the server's caps, low to high.
 * @param {MediaCaps['camera']} caps
 * @param {MediaStreamTrack | null} track null for a camera section that carries no track yet
 * @returns {RTCRtpEncodingParameters[]}
 */
function cameraLayers(caps, track) {
  const top = cameraEncoding(caps, track);
  return CAMERA_LAYERS.map(({ rid, scale, maxBitrate }) => ({
    rid,
    maxBitrate: Math.min(maxBitrate, caps.maxBitrate),
    maxFramerate: caps.maxFramerate,
    scaleResolutionDownBy: (top.scaleResolutionDownBy ?? 1) * scale,
  }));
}

/**
 * The send encoding for a camera under the server's caps: bitrate and frame rate as given, and
 * scaled down so the picture is no taller than the cap.
 * @param {MediaCaps['camera']} caps
 * @param {MediaStreamTrack | null} track null for a camera section that carries no track yet
 * @returns {RTCRtpEncodingParameters}
 */
function cameraEncoding(caps, track) {
  const height = track?.getSettings().height ?? caps.maxHeight;
  return {
    maxBitrate: caps.maxBitrate,
    maxFramerate: caps.maxFramerate,
    scaleResolutionDownBy: Math.max(1, height / caps.maxHeight),
  };
}
