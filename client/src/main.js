/**
 * Starts the client: the routes of the single-page application, bound to one App.
 */

import './style.css';
import { App } from './app.js';
import { casesPage } from './cases/list.js';
import { intakePage } from './cases/intake.js';
import { casePage } from './cases/page.js';
import { joinPage } from './join.js';
import { loginPage } from './login.js';
import { recordsPage } from './records/page.js';
import { roomPage } from './room/page.js';
import { sessionPage } from './schedule/agenda.js';
import { boardsPage } from './schedule/boards.js';
import { calendarPage } from './schedule/calendar.js';

/** @typedef {import('./router.js').Route} Route */

/**
 * @param {App} app
 * @returns {Route[]}
 */
function routes(app) {
  return [
    { pattern: '/login', page: () => loginPage(app), anonymous: true },
    { pattern: '/join/:boardId', page: (params) => joinPage(app, params), anonymous: true },
    { pattern: '/boards', page: () => boardsPage(app) },
    { pattern: '/boards/:id', page: (params) => calendarPage(app, params) },
    { pattern: '/sessions/:id', page: (params) => sessionPage(app, params) },
    { pattern: '/sessions/:id/room', page: (params) => roomPage(app, params) },
    { pattern: '/cases', page: () => casesPage(app) },
    { pattern: '/cases/new', page: () => intakePage(app) },
    { pattern: '/cases/:id', page: (params) => casePage(app, params) },
    { pattern: '/records', page: () => recordsPage(app) },
  ];
}

const root = document.getElementById('app');
if (!root) throw new Error('index.html has no #app element');
new App(root, routes).start();
