// A Node.js service shaped like a real one, for recording memory traces (see
// ../goservice for the same shape in Go): a live index of JS objects,
// requests at a load that swings over a 20-minute cycle, each building
// short-lived objects and filling an LRU cache (a Map) that then evicts, and
// batch bursts every 5-9 minutes that hold 48 MiB of Buffers for a minute or
// so. With a leak rate > 0 it keeps that many bytes a second of strings,
// from leakAfter seconds on, in an array it never frees.
//
//   node service.js <liveMiB> <cacheMiB> <leakRate> <leakAfterSeconds>
'use strict';
const [liveMiB, cacheMiB, leakRate, leakAfter] = process.argv.slice(2).map(Number);
const MIB = 1 << 20;
const start = Date.now();

// One-byte strings of n characters, unique so V8 cannot share them.
let uniq = 0;
function str(n) {
  const head = (uniq++).toString(36) + ':';
  return head + 'x'.repeat(Math.max(0, n - head.length - 1)) + String.fromCharCode(97 + (uniq % 26));
}
function flat(s) { return s.length > 0 ? s.charCodeAt(s.length >> 1) : 0; } // forces a flat string

const index = [];
for (let i = 0; i < liveMiB * MIB / 1024; i++) {
  const s = str(1000);
  flat(s);
  index.push({ id: i, name: s, tags: [i, i + 1] });
}
console.log(`index of ${liveMiB} MiB built in ${Date.now() - start} ms`);

const cache = new Map();
let cacheBytes = 0;
const leaked = [];
let burst = null, burstEnd = 0, nextBurst = 300 + Math.random() * 300;
let leakDebt = 0, lastLeak = 0, key = 0, sink = 0;

function tick() {
  const el = (Date.now() - start) / 1000;
  const gauss = Math.sqrt(-2 * Math.log(Math.random() || 1e-9)) * Math.cos(2 * Math.PI * Math.random());
  const rate = Math.max(1, 8 + 4 * Math.sin(2 * Math.PI * el / 1200) + gauss);
  // A request: temporaries, an index read, a cache lookup and fill.
  const tmp = [];
  for (let i = 0; i < 40 + Math.random() * 80; i++) tmp.push({ a: i, b: str(600) });
  sink += tmp.length + index[Math.floor(Math.random() * index.length)].id;
  const k = key - Math.floor(Math.random() * 20000);
  const hit = cache.get(k);
  if (hit !== undefined) {
    cache.delete(k);
    cache.set(k, hit);
  } else {
    const body = str(8192);
    flat(body);
    cache.set(key++, body);
    cacheBytes += body.length;
    while (cacheBytes > cacheMiB * MIB) {
      const [oldest, v] = cache.entries().next().value;
      cache.delete(oldest);
      cacheBytes -= v.length;
    }
  }
  if (burst === null && el > nextBurst) {
    burst = [];
    for (let i = 0; i < 48; i++) burst.push(Buffer.alloc(MIB, i + 1));
    burstEnd = el + 40 + Math.random() * 60;
  } else if (burst !== null && el > burstEnd) {
    burst = null;
    nextBurst = el + 300 + Math.random() * 240;
  }
  if (leakRate > 0 && el >= leakAfter) {
    leakDebt += leakRate * (el - lastLeak);
    while (leakDebt >= 4096) {
      const s = str(4096);
      flat(s);
      leaked.push(s);
      leakDebt -= 4096;
    }
  }
  lastLeak = el;
  if (key % 20000 === 0) console.log(`t=${el.toFixed(0)}s cache=${(cacheBytes / MIB).toFixed(0)} MiB leaked=${(leaked.length * 4096 / MIB).toFixed(0)} MiB sink=${sink}`);
  setTimeout(tick, 1000 / rate);
}
tick();
