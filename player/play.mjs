#!/usr/bin/env node
// Headless playback check for the appliance's /play/{id} page.
//
//   node player/play.mjs --url URL --screenshot OUT.png [--seconds 2] [--timeout 60]
//                        [--thumbnails]
//
// Launches Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through
// playwright-core with a fresh temporary profile, opens URL, and waits until
// window.playerState.currentTime >= seconds (and, with --thumbnails, until
// the page's thumbnails track has loaded cues), a fatal player error, or the
// timeout. Then it takes a screenshot and prints exactly one JSON line on
// stdout:
//   {"ok":bool,"currentTime":n,"fatal":null|string,"errors":[...],"engine":...,
//    "levels":[...],"thumbnails":null|n,"consoleErrors":[...],"pageErrors":[...],...}
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
    'usage: node player/play.mjs --url URL --screenshot OUT.png [--seconds 2] [--timeout 60] [--thumbnails]\n',
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
  browser: null,
  elapsedMs: 0,
};

function push(list, item) {
  if (list.length < MAX_LIST) list.push(item);
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

  try {
    const resp = await page.goto(opts.url, { waitUntil: 'domcontentloaded', timeout: left() });
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
