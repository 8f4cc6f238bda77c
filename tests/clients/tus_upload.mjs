// tus-js-client under Node against the box, for tests/tests/tus.rs.
//
// Uploads FILE to the tus ENDPOINT with a bearer TOKEN in PATCHes of CHUNK
// bytes. The first PATCH at an offset of at least BREAK_AT sends only the
// first half of its chunk and stalls; a moment later the upload is aborted
// (Upload#abort), so that PATCH breaks off mid-body, as a dropped
// connection does. A new Upload of the same file then finds the stored
// upload (findPreviousUploads, FileUrlStorage in STORE) and resumes it
// (resumeFromPreviousUpload): a HEAD for the offset, then PATCHes to the
// end. Prints one JSON object per line: every response the client read
// ({phase, method, status, offset}), {event: "aborted", offset, sent}
// (where the broken PATCH started, how much of it went out),
// {event: "previous", count, url} and {event: "success", url}.
//
// usage: node tus_upload.mjs ENDPOINT TOKEN FILE STORE METADATA_JSON CHUNK BREAK_AT
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PassThrough } from 'node:stream';

const [endpoint, token, file, store, metadata, chunk, breakAt] = process.argv.slice(2);
// tus-js-client is installed with the player's packages (npm ci --prefix player).
const require = createRequire(new URL('../../player/package.json', import.meta.url));
const tus = require('tus-js-client');

const data = readFileSync(file);
const log = (o) => console.log(JSON.stringify(o));
let phase = 'first';

function options(events) {
  return {
    endpoint,
    headers: { Authorization: `Bearer ${token}` },
    chunkSize: Number(chunk),
    metadata: JSON.parse(metadata),
    urlStorage: new tus.FileUrlStorage(store),
    // 409 (offset moved, or the aborted PATCH is still being stored) is
    // retried after a HEAD.
    retryDelays: [200, 500, 1000, 2000, 4000],
    onAfterResponse(req, res) {
      log({
        phase,
        method: req.getMethod(),
        status: res.getStatus(),
        offset: res.getHeader('Upload-Offset') ?? null,
      });
    },
    ...events,
  };
}

// tus-js-client's own HTTP stack, except that one PATCH sends half its
// body and then waits, so the abort finds it mid-body.
class StallingStack {
  constructor(onStalled) {
    this.inner = new tus.DefaultHttpStack();
    this.onStalled = onStalled;
    this.stalled = false;
  }

  createRequest(method, url) {
    const req = this.inner.createRequest(method, url);
    const send = req.send.bind(req);
    req.send = (body) => {
      const offset = Number(req.getHeader('Upload-Offset'));
      if (method !== 'PATCH' || this.stalled || offset < Number(breakAt)) {
        return send(body);
      }
      this.stalled = true;
      const half = body.subarray(0, Math.floor(body.length / 2));
      const partial = new PassThrough();
      partial.write(half);
      // Never ended: the server holds the half and waits for the rest.
      setTimeout(() => this.onStalled(offset, half.length), 300);
      return send(partial);
    };
    return req;
  }

  getName() {
    return 'StallingStack';
  }
}

// First run: aborted mid-PATCH.
await new Promise((resolve, reject) => {
  const upload = new tus.Upload(
    data,
    options({
      httpStack: new StallingStack((offset, sent) => {
        upload.abort().then(() => {
          log({ event: 'aborted', offset, sent });
          resolve();
        }, reject);
      }),
      onSuccess: () => reject(new Error('the upload finished before it was aborted')),
      onError: reject,
    }),
  );
  upload.start();
});

// Second run, as a client restarted later would: find and resume it.
phase = 'resumed';
const url = await new Promise((resolve, reject) => {
  const upload = new tus.Upload(
    data,
    options({ onSuccess: () => resolve(upload.url), onError: reject }),
  );
  upload.findPreviousUploads().then((previous) => {
    log({ event: 'previous', count: previous.length, url: previous[0]?.uploadUrl ?? null });
    if (previous.length === 0) {
      reject(new Error('no previous upload was stored'));
      return;
    }
    upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  }, reject);
});
log({ event: 'success', url });
// Keep-alive sockets would hold the process open.
process.exit(0);
