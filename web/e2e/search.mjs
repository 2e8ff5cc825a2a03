#!/usr/bin/env node
// Headless-Chromium test of the page served by `tsunagu serve` at GET /.
//
//   node web/e2e/search.mjs URL TOKEN
//
// URL is the server's base (http://127.0.0.1:PORT), TOKEN a bearer token of a tenant.
// Environment:
//   EXPECT      JSON with what the page must show (default below); see `defaultExpect`.
//   CHROMIUM    the browser binary (default /usr/bin/chromium; never downloaded).
//   SCREENSHOT  write a full-page PNG there (after the searches, or at the failure).
//   TIMEOUT_MS  how long to wait for any one thing (default 15000).
// Exits 0 when every check passes, 1 with a `search.mjs: FAIL: ...` line otherwise, 2 on bad usage.

import { chromium } from 'playwright-core';

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error('usage: node search.mjs URL TOKEN   (env: EXPECT, CHROMIUM, SCREENSHOT, TIMEOUT_MS)');
  process.exit(2);
}
const TIMEOUT = Number(process.env.TIMEOUT_MS || 15000);

// The default expectation is loose (any matches, each consistent with the filters); the Rust
// test passes exact ids, memos, totals and counts.
const defaultExpect = {
  // Page size the page is opened with (?limit=N), so that "more" is exercised on few rows.
  page_size: null,
  searches: [
    {
      filters: { q: '見積', action: 'visit' }, // q, action, user_id, deal_id, result, tag, from, to (YYYY-MM-DD)
      // ids: [...], memos: [...]   rows in order, all pages;  total: N;  by_action: {visit: N}
      min_rows: 1,
      submit: 'click', // or 'enter' (press Enter in the memo text box)
    },
  ],
  min_shards: 1,
  // Filters the API must reject with a field error on `field` (default: from after to).
  // api_error: { filters: { from: '2026-11-20', to: '2026-11-10' }, field: 'to' },
};
let expect;
try {
  expect = process.env.EXPECT ? JSON.parse(process.env.EXPECT) : defaultExpect;
} catch (e) {
  console.error(`search.mjs: EXPECT is not JSON: ${e.message}`);
  process.exit(2);
}

class Fail extends Error {}
const fail = (msg) => { throw new Fail(msg); };
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const step = (msg) => console.log(`search.mjs: ok: ${msg}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
  timeout: 60000,
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, locale: 'ja-JP', timezoneId: 'Asia/Tokyo' });
page.setDefaultTimeout(TIMEOUT);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => {
  // The 4xx answers provoked below are checked explicitly; Chromium logs each one.
  if (m.type() === 'error' && !/^Failed to load resource: .* status of 4\d\d/.test(m.text())) {
    console.error(`search.mjs: browser console: ${m.text()}`);
  }
});
let statusRequests = 0;
page.on('request', (r) => { if (new URL(r.url()).pathname === '/api/v1/pipeline/status') statusRequests++; });

// The page marks #results with data-seq (one per search or "more") and data-state
// (loading → done | error). Waits until a search newer than `after` has settled.
async function settled(after) {
  await page.waitForFunction((after) => {
    const r = document.getElementById('results');
    return Number(r.dataset.seq) > after && r.dataset.state !== 'loading';
  }, after, { timeout: TIMEOUT }).catch(() => fail(`no search result within ${TIMEOUT} ms (after search #${after})`));
  return page.$eval('#results', (r) => ({ seq: Number(r.dataset.seq), state: r.dataset.state }));
}
const seqNow = () => page.$eval('#results', (r) => Number(r.dataset.seq));
const errorText = () => page.$eval('#error', (e) => (e.hidden ? '' : e.innerText.trim()));

async function fillFilters(filters) {
  for (const axis of ['q', 'user_id', 'deal_id', 'result', 'tag', 'from', 'to']) {
    await page.fill(`#${axis}`, filters[axis] ?? '');
  }
  await page.selectOption('#action', filters.action ?? '');
}

async function runSearch(filters, submit = 'click') {
  await fillFilters(filters);
  const before = await seqNow();
  if (submit === 'enter') await page.press('#q', 'Enter');
  else await page.click('#search');
  return settled(before);
}

// All rows of the current result list, after following "more" to the end.
async function allRows() {
  let pages = 1;
  while (await page.isVisible('#more')) {
    if (pages > 200) fail('"more" never went away');
    const before = await seqNow();
    await page.click('#more');
    const s = await settled(before);
    if (s.state !== 'done') fail(`loading more failed: ${await errorText()}`);
    pages++;
  }
  const rows = await page.$$eval('#results tbody tr[data-id]', (trs) => trs.map((tr) => ({
    id: tr.dataset.id,
    action: tr.querySelector('td.action').dataset.action,
    user_id: tr.querySelector('td.user').textContent,
    deal_id: tr.querySelector('td.deal').textContent,
    result: tr.querySelector('td.result').textContent,
    tags: [...tr.querySelectorAll('td.tags .tag')].map((t) => t.textContent),
    // The whole memo (with q the cell shows highlighted fragments and the memo folded).
    memo: tr.querySelector('td.memo').dataset.memo,
    marks: [...tr.querySelectorAll('td.memo .fragment mark')].map((m) => m.textContent),
    when: tr.querySelector('td.when').textContent,
  })));
  return { rows, pages };
}

function checkRowsMatch(rows, f) {
  const list = (v) => (v ? String(v).split(',').map((s) => s.trim()).filter(Boolean) : []);
  for (const r of rows) {
    const bad = (why) => fail(`row ${r.id} (${JSON.stringify(r)}) does not match the filters: ${why}`);
    if (f.action && !list(f.action).includes(r.action)) bad('action');
    if (f.user_id && !list(f.user_id).includes(r.user_id)) bad('user_id');
    if (f.deal_id && !list(f.deal_id).includes(r.deal_id)) bad('deal_id');
    if (f.result && !list(f.result).includes(r.result)) bad('result');
    for (const t of list(f.tag)) if (!r.tags.includes(t)) bad(`tag ${t}`);
    for (const w of (f.q || '').split(/\s+/).filter(Boolean)) if (!r.memo.includes(w)) bad(`memo lacks ${w}`);
    // With q, each row shows highlighted fragments marking the words.
    for (const w of (f.q || '').split(/\s+/).filter(Boolean)) if (!r.marks.includes(w)) bad(`no <mark> for ${w}`);
    if (!r.when || /Invalid/.test(r.when)) bad(`occurred_at rendered as ${JSON.stringify(r.when)}`);
  }
}

async function checkSearch(s, i) {
  const label = `search ${i + 1} ${JSON.stringify(s.filters)}`;
  const st = await runSearch(s.filters, s.submit);
  if (st.state !== 'done') fail(`${label}: the page shows an error: ${await errorText()}`);
  if (await errorText()) fail(`${label}: #error is shown after a successful search: ${await errorText()}`);
  const totalText = (await page.textContent('#total')).trim();
  const { rows, pages } = await allRows();
  checkRowsMatch(rows, s.filters);
  const ids = rows.map((r) => r.id);
  if (s.ids && !same(ids, s.ids)) fail(`${label}: rows ${JSON.stringify(ids)}, expected ${JSON.stringify(s.ids)}`);
  const memos = rows.map((r) => r.memo);
  if (s.memos && !same(memos, s.memos)) fail(`${label}: memos ${JSON.stringify(memos)}, expected ${JSON.stringify(s.memos)}`);
  if (s.min_rows !== undefined && rows.length < s.min_rows) fail(`${label}: ${rows.length} rows, expected at least ${s.min_rows}`);
  if (new Set(ids).size !== ids.length) fail(`${label}: duplicate rows across pages: ${JSON.stringify(ids)}`);
  const m = /^([\d,]+)件$/.exec(totalText);
  if (!m) fail(`${label}: #total is ${JSON.stringify(totalText)}, expected "N件"`);
  const total = Number(m[1].replace(/,/g, ''));
  if (s.total !== undefined && total !== s.total) fail(`${label}: #total says ${total}, expected ${s.total}`);
  if (total !== rows.length) fail(`${label}: #total says ${total} but ${rows.length} rows were listed after "more"`);
  if (expect.page_size && rows.length > expect.page_size && pages < 2) fail(`${label}: ${rows.length} rows on one page of ${expect.page_size}`);
  if (s.by_action) {
    const shown = await page.$$eval('#by-action li[data-key]', (lis) =>
      Object.fromEntries(lis.map((li) => [li.dataset.key, Number(li.querySelector('.count').textContent.replace(/,/g, ''))])));
    if (!same(Object.entries(shown).sort(), Object.entries(s.by_action).sort())) {
      fail(`${label}: #by-action shows ${JSON.stringify(shown)}, expected ${JSON.stringify(s.by_action)}`);
    }
  }
  // Data goes in as text: nothing but the page's own elements inside the result rows
  // (MARK, DETAILS and SUMMARY are the page's highlights and its folded whole memo).
  const foreign = await page.$$eval('#results tbody *', (els) =>
    els.filter((e) => !['TR', 'TD', 'SPAN', 'MARK', 'DETAILS', 'SUMMARY'].includes(e.tagName))
      .map((e) => e.tagName));
  if (foreign.length) fail(`${label}: unexpected elements in the results: ${foreign.join(', ')}`);
  step(`${label}: ${rows.length} rows on ${pages} page(s), total ${total}`);
}

async function run() {
  const url = new URL(base);
  if (url.pathname === '') url.pathname = '/';
  if (expect.page_size) url.searchParams.set('limit', String(expect.page_size));
  url.hash = `token=${encodeURIComponent(token)}`;
  const res = await page.goto(url.toString(), { waitUntil: 'load' });
  if (!res || !res.ok()) fail(`GET ${url.origin}${url.pathname} answered ${res && res.status()}`);
  const ctype = res.headers()['content-type'] || '';
  if (!/^text\/html/.test(ctype)) fail(`GET / has content-type ${JSON.stringify(ctype)}, expected text/html`);

  // The token moved from the fragment to the input and localStorage; the address bar is clean.
  if (page.url().includes('token=')) fail(`the token is still in the address bar: ${page.url()}`);
  if ((await page.inputValue('#token')) !== token) fail('#token does not hold the token from the URL fragment');
  const stored = await page.evaluate(() => Object.values({ ...localStorage }));
  if (!stored.includes(token)) fail('the token was not saved in localStorage');
  step('token taken from the URL fragment, saved, and removed from the address bar');

  // With a token the page searches on load; let that settle first.
  const first = await settled(0);
  if (first.state !== 'done') fail(`the initial search failed: ${await errorText()}`);

  for (const [i, s] of expect.searches.entries()) await checkSearch(s, i);

  // Pipeline status, refreshed every 2 s.
  const minShards = expect.min_shards ?? 1;
  await page.waitForFunction((n) => document.querySelectorAll('#shards tr[data-shard]').length >= n, minShards, { timeout: TIMEOUT })
    .catch(async () => fail(`#status shows no shard rows (note: ${await page.textContent('#status-note')})`));
  const dlq = (await page.textContent('#dlq')).trim();
  if (!/^\d[\d,]*$/.test(dlq)) fail(`#dlq is ${JSON.stringify(dlq)}, expected a number`);
  const p99 = (await page.textContent('#lag-p99')).trim();
  if (!p99) fail('#lag-p99 is empty');
  const shardRows = await page.$$eval('#shards tr[data-shard]', (trs) => trs.map((tr) => [tr.dataset.consumer, ...[...tr.cells].map((c) => c.textContent)]));
  const polled = statusRequests;
  await page.waitForEvent('request', {
    predicate: (r) => new URL(r.url()).pathname === '/api/v1/pipeline/status',
    timeout: 5000,
  }).catch(() => fail(`the status was not polled again within 5 s (${polled} polls so far)`));
  step(`status: ${shardRows.length} shard row(s) ${JSON.stringify(shardRows)}, DLQ ${dlq}, lag p99 ${p99}; polled again`);

  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  // Filters the API rejects (by default from after to), shown with the field named.
  const bad = expect.api_error || { filters: { from: '2026-11-20', to: '2026-11-10' }, field: 'to' };
  let st, err;
  {
    const waitResponse = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/activities');
    st = await runSearch(bad.filters);
    const status = (await waitResponse).status();
    err = await errorText();
    if (status !== 400 && status !== 422) fail(`the API answered ${status} to ${JSON.stringify(bad.filters)}, expected 400/422`);
    if (st.state !== 'error' || !err.includes(bad.field)) {
      fail(`the rejection of ${JSON.stringify(bad.filters)} is not shown with field ${bad.field}: #error ${JSON.stringify(err)}`);
    }
    if (await page.$('#results tbody tr[data-id]')) fail('rows are still shown after a rejected search');
    step(`${JSON.stringify(bad.filters)} rejected by the API (HTTP ${status}), #error: ${JSON.stringify(err)}`);
  }

  // A token the API rejects: the API's own message is shown.
  await page.fill('#token', 'not-a-valid-token');
  await page.dispatchEvent('#token', 'change');
  const waitResponse = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/activities');
  st = await runSearch({});
  const status = (await waitResponse).status();
  err = await errorText();
  if (status !== 401 && status !== 403) fail(`a bad token got HTTP ${status}, expected 401`);
  if (st.state !== 'error' || !err) fail(`a rejected token shows no #error (state ${st.state})`);
  if (await page.$('#results tbody tr[data-id]')) fail('rows are still shown after a failed search');
  step(`bad token (HTTP ${status}) shows #error: ${JSON.stringify(err)}`);

  if (pageErrors.length) fail(`uncaught errors in the page: ${pageErrors.join('; ')}`);
}

let code = 0;
try {
  await run();
  console.log('search.mjs: PASS');
} catch (e) {
  code = 1;
  console.error(`search.mjs: FAIL: ${e instanceof Fail ? e.message : e.stack || e}`);
  if (pageErrors.length) console.error(`search.mjs: page errors: ${pageErrors.join('; ')}`);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true }).catch(() => {});
} finally {
  await browser.close().catch(() => {});
}
process.exit(code);
