#!/usr/bin/env node
// Driver for the tusd-trio end-to-end tests: runs one tus-js-client upload
// and prints a single JSON object describing what happened on stdout.
//
// Usage: node tus_upload.js '<json options>'
//
// Options (all optional unless noted):
//   file             (required) path of the file to upload (read into a Buffer)
//   endpoint         creation endpoint, e.g. http://127.0.0.1:PORT/files/
//   uploadUrl        resume this existing upload instead of creating one
//   chunkSize        bytes per PATCH request
//   parallelUploads  number of parallel partial uploads (concatenation)
//   metadata         object of Upload-Metadata key/values
//   abortAtFraction  call upload.abort() once onProgress passes this fraction
//   retryDelays      array of ms delays (default: a few short retries)
//
// Output fields: status ("success" | "aborted" | "error"), url, size,
// bytesAtAbort, requests (method/url/status/headers of each request),
// firstPatchOffset, error.
"use strict";

const fs = require("node:fs");

let tus;
try {
  tus = require("tus-js-client");
} catch (err) {
  process.stderr.write(
    "tus-js-client is not installed: run `npm ci` in tests/e2e/js\n" + String(err) + "\n",
  );
  process.exit(3);
}

function main() {
  const opts = JSON.parse(process.argv[2] || "{}");
  if (!opts.file) throw new Error("option 'file' is required");
  const data = fs.readFileSync(opts.file);
  const result = {
    status: null,
    url: null,
    size: data.length,
    bytesAtAbort: null,
    firstPatchOffset: null,
    requests: [],
    error: null,
  };

  let upload;
  let aborting = false;
  let finished = false;

  const done = new Promise((resolve) => {
    const finish = (status, extra) => {
      if (finished) return;
      finished = true;
      result.status = status;
      Object.assign(result, extra || {});
      if (upload && upload.url) result.url = upload.url;
      resolve();
    };

    const options = {
      retryDelays: opts.retryDelays || [0, 250, 500, 1000, 2000, 4000],
      metadata: opts.metadata || {},
      onBeforeRequest(req) {
        if (req.getMethod() === "PATCH" && result.firstPatchOffset === null) {
          const off = req.getHeader("Upload-Offset");
          if (off !== undefined) result.firstPatchOffset = Number(off);
        }
      },
      onAfterResponse(req, res) {
        result.requests.push({
          method: req.getMethod(),
          url: req.getURL(),
          status: res.getStatus(),
          uploadOffset: req.getHeader("Upload-Offset") ?? null,
          uploadConcat: req.getHeader("Upload-Concat") ?? null,
          responseOffset: res.getHeader("Upload-Offset") ?? null,
        });
      },
      onProgress(sent, total) {
        if (
          opts.abortAtFraction != null &&
          !aborting &&
          total > 0 &&
          sent / total >= opts.abortAtFraction
        ) {
          aborting = true;
          result.bytesAtAbort = sent;
          // abort() must not be awaited from inside the progress callback's
          // caller; schedule it and report once it has settled.
          setImmediate(() => {
            upload.abort(false).then(
              () => finish("aborted"),
              (err) => finish("error", { error: "abort failed: " + String(err) }),
            );
          });
        }
      },
      onSuccess() {
        finish("success");
      },
      onError(err) {
        finish("error", { error: String(err && err.stack ? err.stack : err) });
      },
    };
    if (opts.endpoint) options.endpoint = opts.endpoint;
    if (opts.uploadUrl) options.uploadUrl = opts.uploadUrl;
    if (opts.chunkSize) options.chunkSize = opts.chunkSize;
    if (opts.parallelUploads) options.parallelUploads = opts.parallelUploads;

    upload = new tus.Upload(data, options);
    upload.start();
  });

  done.then(() => {
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(result.status === "error" ? 1 : 0);
  });
}

try {
  main();
} catch (err) {
  process.stdout.write(JSON.stringify({ status: "error", error: String(err.stack || err) }) + "\n");
  process.exit(2);
}
