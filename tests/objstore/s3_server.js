// A local S3-compatible server for maroon's object store tests: s3rver
// (npm), with every request's AWS Signature Version 4 checked here, since
// s3rver accepts any V4 signature of a known access key. The signature is
// recomputed by the aws4 package from the request as received, and the
// body's SHA-256 checked against x-amz-content-sha256; a mismatch, an
// unknown key or an unsigned request is answered 403 as S3 would.
//
// Also, for the tests: POST /__fail?count=N&status=S answers the next N
// requests with status S (an injected outage), GET /__stats counts, and
// --list-page N makes listings page every N keys.
//
//   node --openssl-legacy-provider s3_server.js --dir D --bucket B \
//        --access-key K --secret S --port-file F [--list-page N]
// prints nothing until it listens; then writes its port to F. (s3rver
// makes listings' continuation tokens with DES, which OpenSSL 3 keeps in
// its legacy provider.)
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { Readable } = require('stream');
const aws4 = require('aws4');
const S3rver = require('s3rver');
const AWSAccount = require('s3rver/lib/models/account');

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0) {
    if (fallback === undefined) throw new Error('missing --' + name);
    return fallback;
  }
  return process.argv[i + 1];
}

const dir = arg('dir');
const bucket = arg('bucket');
const accessKey = arg('access-key');
const secret = arg('secret');
const portFile = arg('port-file');
// Listings answer at most this many keys a page (0: s3rver's 1000), so the
// client's paging (continuation tokens) is exercised with few objects.
const listPage = Number(arg('list-page', '0'));
const bodyMax = 64 * 1024 * 1024;

const secrets = new Map([[accessKey, secret]]);
AWSAccount.DUMMY_ACCOUNT.createKeyPair(accessKey, secret);

const stats = { requests: 0, refused: 0, injected: 0, parts: 0, puts: 0, list_pages: 0 };
let failNext = 0;
let failStatus = 503;

function s3Error(ctx, status, code, message) {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > bodyMax) throw new Error('body too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

const authRe =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

async function verifySigV4(ctx, next) {
  if (ctx.path === '/__fail') {
    failNext = Number(ctx.query.count || 1);
    failStatus = Number(ctx.query.status || 503);
    ctx.body = 'ok';
    return;
  }
  if (ctx.path === '/__stats') {
    ctx.body = JSON.stringify(stats);
    return;
  }
  stats.requests++;
  if (failNext > 0) {
    failNext--;
    stats.injected++;
    return s3Error(ctx, failStatus, 'InternalError', 'injected by the test');
  }
  const m = authRe.exec(ctx.get('authorization'));
  if (!m) {
    stats.refused++;
    return s3Error(ctx, 403, 'AccessDenied', 'requests must be signed with AWS Signature V4');
  }
  const [, keyId, , region, signedHeaders, signature] = m;
  const key = secrets.get(keyId);
  if (key === undefined) {
    stats.refused++;
    return s3Error(ctx, 403, 'InvalidAccessKeyId', 'unknown access key');
  }
  const body = await readBody(ctx.req);
  const headers = {};
  for (const h of signedHeaders.split(';')) {
    if (h !== 'host') headers[h] = ctx.get(h);
  }
  const request = {
    host: ctx.get('host'),
    method: ctx.method,
    path: ctx.originalUrl,
    service: 's3',
    region,
    headers,
  };
  aws4.sign(request, { accessKeyId: keyId, secretAccessKey: key });
  const expected = /Signature=([0-9a-f]{64})/.exec(request.headers.Authorization)[1];
  const expectedSigned = /SignedHeaders=([^,]+)/.exec(request.headers.Authorization)[1];
  if (expected !== signature || expectedSigned !== signedHeaders) {
    stats.refused++;
    return s3Error(ctx, 403, 'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided.');
  }
  const claimed = ctx.get('x-amz-content-sha256');
  const actual = crypto.createHash('sha256').update(body).digest('hex');
  if (claimed !== 'UNSIGNED-PAYLOAD' && claimed !== actual) {
    stats.refused++;
    return s3Error(ctx, 400, 'XAmzContentSHA256Mismatch',
      'x-amz-content-sha256 is missing or is not the hash of the body');
  }
  if (ctx.method === 'PUT') {
    if (ctx.query.partNumber) stats.parts++;
    else stats.puts++;
  }
  if (ctx.method === 'GET' && ctx.query['list-type'] === '2') {
    stats.list_pages++;
    // After the signature check, which covered the query as sent.
    if (listPage > 0) ctx.query = { ...ctx.query, 'max-keys': String(listPage) };
  }
  // s3rver reads the body again from ctx.req.
  const original = ctx.req;
  const replay = Readable.from(body.length ? [body] : []);
  for (const p of ['url', 'method', 'headers', 'rawHeaders', 'socket', 'connection',
    'httpVersion', 'httpVersionMajor', 'httpVersionMinor']) {
    replay[p] = original[p];
  }
  ctx.req = replay;
  ctx.request.req = replay;
  return next();
}

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory: dir,
  silent: process.env.S3_SERVER_VERBOSE ? false : true,
  configureBuckets: [{ name: bucket }],
});
server.middleware.unshift(verifySigV4);
server.run().then(({ port }) => {
  fs.writeFileSync(portFile + '.tmp', String(port));
  fs.renameSync(portFile + '.tmp', portFile);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close().finally(() => process.exit(0)));
}
