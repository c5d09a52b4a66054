"""A CPython service shaped like a real one, for recording memory traces
(see ../goservice for the same shape in Go): a live index of small objects,
requests at a load that swings over a 20-minute cycle, each building
short-lived dicts and filling an LRU cache (an OrderedDict) that then evicts,
and batch bursts every 5-9 minutes that hold 48 MiB of bytearrays for a
minute or so (large objects: mmap'd and given back on free). With a leak
rate > 0 it keeps that many bytes a second of bytes objects, from leakAfter
seconds on, in a list it never frees.

    python3 service.py <liveMiB> <cacheMiB> <leakRate> <leakAfterSeconds>
"""
import collections
import math
import random
import sys
import time

MIB = 1 << 20


def blob(n, seed):
    """n bytes, distinct per seed."""
    return (seed.to_bytes(8, "little") * (n // 8 + 1))[:n]


def main():
    live_mib, cache_mib, leak_rate, leak_after = (int(a) for a in sys.argv[1:5])
    start = time.monotonic()
    index = [{"id": i, "name": blob(900, i), "tags": (i, i + 1)} for i in range(live_mib * MIB // 1024)]
    print(f"index of {live_mib} MiB built in {time.monotonic() - start:.1f}s", flush=True)
    cache = collections.OrderedDict()
    cache_bytes = 0
    leaked = []
    burst, burst_end, next_burst = None, 0.0, 300 + random.random() * 300
    leak_debt, last_leak, key, sink = 0.0, 0.0, 0, 0
    while True:
        el = time.monotonic() - start
        rate = max(1.0, 8 + 4 * math.sin(2 * math.pi * el / 1200) + random.gauss(0, 1))
        # A request: temporaries, an index read, a cache lookup and fill.
        tmp = [{"a": i, "b": blob(600, key + i)} for i in range(random.randint(40, 120))]
        sink += len(tmp) + index[random.randrange(len(index))]["id"]
        k = key - random.randrange(20000)
        if k in cache:
            cache.move_to_end(k)
        else:
            cache[key] = blob(8192, key)
            key += 1
            cache_bytes += 8192
            while cache_bytes > cache_mib * MIB:
                cache.popitem(last=False)
                cache_bytes -= 8192
        if burst is None and el > next_burst:
            burst = [bytearray(b"\x01") * MIB for _ in range(48)]
            burst_end = el + 40 + random.random() * 60
        elif burst is not None and el > burst_end:
            burst = None
            next_burst = el + 300 + random.random() * 240
        if leak_rate > 0 and el >= leak_after:
            leak_debt += leak_rate * (el - last_leak)
            while leak_debt >= 4096:
                leaked.append(blob(4096, len(leaked)))
                leak_debt -= 4096
        last_leak = el
        if key % 20000 == 0:
            print(f"t={el:.0f}s cache={cache_bytes // MIB} MiB leaked={len(leaked) * 4096 // MIB} MiB sink={sink}", flush=True)
        time.sleep(1 / rate)


main()
