#!/usr/bin/env node
// Headless playback check for the appliance's /play/{id} page.
//
//   node player/play.mjs --url URL --screenshot OUT.png [--seconds 2] [--timeout 60]
//   node player/play.mjs --engine shaka --url MASTER_URL --screenshot OUT.png …
//
// With --engine shaka, URL is a master playlist: Shaka Player (npm
// shaka-player, served to the page from node_modules) plays it on a bare
// page at the same origin, with the same window.playerState; a gap Shaka
// had to jump is reported as an error `gapJumped`.
//                        [--thumbnails]
//
// Launches Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core with a fresh temporary profile, opens URL, and waits until
// window.playerState.currentTime >= seconds (and, with --thumbnails, until
// the page's thumbnails track has loaded cues), a fatal player error, or the
// timeout. Then it takes a screenshot and prints exactly one JSON line on
// stdout:
//   {"ok":bool,"currentTime":n,"fatal":null|string,"errors":[...],"engine":...,
//    "levels":[...],"thumbnails":null|n,"consoleErrors":[...],"pageErrors":[...],
//    "httpStatus":n,"title":string,"heading":null|string,"statusLine":null|string,...}
// (`heading` is the page's first <h1>, `statusLine` the player's status text.)
// Exit status: 0 when ok, 1 otherwise, 2 for bad command-line arguments.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];
const MAX_LIST = 50;

function usage(msg) {
  if (msg) process.stderr.write(`play.mjs: ${msg}\n`);
  process.stderr.write(
    'usage: node player/play.mjs [--engine hlsjs|shaka] --url URL --screenshot OUT.png [--seconds 2] [--timeout 60] [--thumbnails]\n',
  );
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      url: { type: 'string' },
      screenshot: { type: 'string' },
      seconds: { type: 'string', default: '2' },
      timeout: { type: 'string', default: '60' },
      thumbnails: { type: 'boolean', default: false },
      engine: { type: 'string', default: 'hlsjs' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values;
} catch (e) {
  usage(e.message);
}
if (opts.help) usage();
if (!opts.url) usage('--url is required');
if (!opts.screenshot) usage('--screenshot is required');
if (!['hlsjs', 'shaka'].includes(opts.engine)) usage('--engine is hlsjs or shaka');
const seconds = Number(opts.seconds);
const timeoutS = Number(opts.timeout);
if (!Number.isFinite(seconds) || seconds < 0) usage('--seconds must be a number >= 0');
if (!Number.isFinite(timeoutS) || timeoutS <= 0) usage('--timeout must be a number > 0');

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const started = Date.now();
const deadline = started + timeoutS * 1000;
const left = () => Math.max(1, deadline - Date.now());

const result = {
  ok: false,
  currentTime: 0,
  fatal: null,
  errors: [],
  engine: null,
  levels: [],
  thumbnails: null,
  ready: false,
  support: null,
  consoleErrors: [],
  pageErrors: [],
  failedRequests: [],
  timedOut: false,
  screenshot: null,
  httpStatus: null,
  title: null,
  heading: null,
  statusLine: null,
  browser: null,
  elapsedMs: 0,
};

function push(list, item) {
  if (list.length < MAX_LIST) list.push(item);
}

// The bare Shaka page: plays `master`, keeps window.playerState as the
// appliance's /play page does.
function shakaPage(master) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>shaka</title></head>
<body style="margin:0;background:#000"><video id="v" muted autoplay playsinline style="width:100%"></video>
<script src="/__shaka__/shaka.js"></script>
<script>
(async function () {
  var state = window.playerState = { ready: false, currentTime: 0, fatal: null, errors: [],
    engine: 'shaka', levels: [], support: null, bufferedStart: null };
  var video = document.getElementById('v');
  shaka.polyfill.installAll();
  state.support = shaka.Player.isBrowserSupported();
  var player = new shaka.Player();
  player.addEventListener('error', function (e) {
    var d = e.detail || {};
    state.errors.push({ type: 'shaka', details: String(d.code), fatal: d.severity === 2 });
    if (d.severity === 2) state.fatal = 'shaka error ' + d.code;
  });
  video.addEventListener('canplay', function () { state.ready = true; });
  setInterval(function () {
    state.currentTime = video.currentTime;
    if (video.buffered.length) state.bufferedStart = video.buffered.start(0);
    var gaps = player.getStats().gapsJumped || 0;
    var seen = state.errors.filter(function (x) { return x.details === 'gapJumped'; }).length;
    for (var i = seen; i < gaps; i++) state.errors.push({ type: 'shaka', details: 'gapJumped', fatal: false });
  }, 100);
  try {
    await player.attach(video);
    await player.load(${JSON.stringify(master)});
    state.levels = player.getVariantTracks().map(function (t) { return t.width + 'x' + t.height + '@' + t.bandwidth; });
    await video.play();
  } catch (e) {
    state.fatal = 'shaka: ' + (e && (e.code || e.message) || e);
  }
})();
</script></body></html>`;
}

let emitted = false;
function emit() {
  if (emitted) return;
  emitted = true;
  result.elapsedMs = Date.now() - started;
  process.stdout.write(JSON.stringify(result) + '\n');
}

// Last-resort watchdog: whatever hangs (browser launch, screenshot, close),
// report and exit well after the requested timeout.
let profileDir = null;
const watchdog = setTimeout(() => {
  result.ok = false;
  result.timedOut = true;
  result.fatal = result.fatal || 'watchdog: play.mjs hung past --timeout';
  emit();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  process.exit(1);
}, timeoutS * 1000 + 30_000);
watchdog.unref();

let context = null;
try {
  profileDir = mkdtempSync(join(tmpdir(), 'play-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: left(),
  });
  result.browser = context.browser()?.version() ?? null;

  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const where = msg.location()?.url;
    push(result.consoleErrors, where ? `${msg.text()} (${where})` : msg.text());
  });
  page.on('pageerror', (err) => push(result.pageErrors, String(err?.message ?? err)));
  page.on('requestfailed', (req) =>
    push(result.failedRequests, `${req.method()} ${req.url()}: ${req.failure()?.errorText ?? 'failed'}`),
  );
  page.on('response', (res) => {
    if (res.status() >= 400) push(result.failedRequests, `${res.request().method()} ${res.url()}: HTTP ${res.status()}`);
  });

  let pageUrl = opts.url;
  if (opts.engine === 'shaka') {
    // A page at the stream's origin (no CORS in the way), from this script.
    const origin = new URL(opts.url).origin;
    pageUrl = `${origin}/__shaka__/index.html`;
    const here = new URL('.', import.meta.url).pathname;
    const lib = join(here, 'node_modules/shaka-player/dist/shaka-player.compiled.js');
    await page.route(`${origin}/__shaka__/**`, (route) => {
      const path = new URL(route.request().url()).pathname;
      if (path.endsWith('/shaka.js')) {
        return route.fulfill({ path: lib, contentType: 'text/javascript' });
      }
      return route.fulfill({ body: shakaPage(opts.url), contentType: 'text/html' });
    });
  }
  try {
    const resp = await page.goto(pageUrl, { waitUntil: 'domcontentloaded', timeout: left() });
    result.httpStatus = resp ? resp.status() : null;
    if (resp && !resp.ok()) result.fatal = `page: HTTP ${resp.status()}`;
  } catch (e) {
    result.fatal = `page: ${e.message.split('\n')[0]}`;
  }

  const snapshot = () =>
    page.evaluate(() => {
      const s = window.playerState;
      if (!s) return null;
      return {
        currentTime: s.currentTime,
        fatal: s.fatal,
        errors: s.errors,
        engine: s.engine,
        levels: s.levels,
        thumbnails: s.thumbnails ?? null,
        bufferedStart: s.bufferedStart ?? null,
        ready: s.ready,
        support: s.support,
      };
    });

  while (!result.fatal) {
    let s = null;
    try {
      s = await snapshot();
    } catch (e) {
      // Navigation in progress or page crashed; keep polling until the deadline.
      if (page.isClosed()) {
        result.fatal = 'page closed or crashed';
        break;
      }
    }
    if (s) {
      Object.assign(result, s);
      if (s.fatal) break;
      if (s.currentTime >= seconds && (!opts.thumbnails || s.thumbnails > 0)) break;
    }
    if (Date.now() >= deadline) {
      result.timedOut = true;
      break;
    }
    await page.waitForTimeout(Math.min(200, left()));
  }

  try {
    Object.assign(
      result,
      await page.evaluate(() => ({
        title: document.title,
        heading: document.querySelector('h1')?.textContent ?? null,
        statusLine: document.getElementById('status-text')?.textContent ?? null,
      })),
    );
  } catch (e) {
    push(result.pageErrors, `reading the page failed: ${e.message.split('\n')[0]}`);
  }
  try {
    await page.screenshot({ path: opts.screenshot, timeout: 15_000 });
    result.screenshot = opts.screenshot;
  } catch (e) {
    push(result.pageErrors, `screenshot failed: ${e.message.split('\n')[0]}`);
  }
} catch (e) {
  result.fatal = result.fatal || `browser: ${e.message.split('\n')[0]}`;
} finally {
  if (context) await context.close().catch(() => {});
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
}

result.ok =
  !result.fatal &&
  !result.timedOut &&
  result.currentTime >= seconds &&
  (!opts.thumbnails || result.thumbnails > 0);
emit();
process.exit(result.ok ? 0 : 1);
