// Package corpusgen generates leakwatch's labelled corpus of memory series,
// deterministically from a seed: the committed corpus under test/corpus is
// Write(dir, DefaultSeed), and Generate builds the same series in memory for
// any seed, so that the detector can be measured on many seeds without
// files (test/benchdetect -seeds, the detector's tests).
//
// Every series has one point every 10 s; its value at t is base + leak +
// GC sawtooth + shape(t) + white noise, with restarts replacing the whole by
// a fresh warm-up. In this old corpus the seed moves the noise and the GC
// phases, not the shapes, the rates or the leak starts.
//
// Production(seed) builds a second family, shaped like big-heap services
// (GC cycles of 20 s–15 min, load-driven GC, daily and weekly cycles, heap
// expansion to a cap, allocator high-water marks, queue backlogs, caches,
// and leaks hidden under each or shaped by traffic, acceleration, steps and
// OOM restarts), where the seed draws every shape parameter as well (below).
// WriteProduction writes one seed of it as CSV files.
//
// # The production family
//
// Its series are drawn from a seed that moves every shape parameter (periods, amplitudes, rates, leak
// starts, durations), not only the noise, so that a seed the detector was
// not tuned on is really unseen. Production(seed) returns, for each family
// below, one healthy series and the leaking variants listed, in this order;
// every series has one point every 10 s and is labelled by construction.
//
// Shapes (healthy; each also hides the leaks of the next list):
//
//	gc_long       GC sawtooth, period log-uniform in 20 s–15 min, each cycle
//	              jittered ±25%, amplitude 64 MiB–1 GiB, base 128 MiB–2 GiB, 6 h
//	gc_load       GC whose period follows load: base period 1–5 min divided
//	              by a load curve (two sinusoids, 40 min–3 h, ±20–50%),
//	              amplitude scaled by load, 64–768 MiB, 6 h
//	heap_expand   heap committed in 3–8 steps up to a cap of 256 MiB–1.5 GiB
//	              within the first 10–40 min, then flat (JVM regions, Go heap
//	              goal), under a GC sawtooth of 30 s–2 min, 6 h
//	highwater     allocator high-water mark: load bursts (every 10–60 min,
//	              2–10 min long, up to 100–600 MiB) ratchet the resident
//	              size up to the largest burst so far, and it stays, 6 h
//	queue         backlog that builds for 5–20 min to 100–500 MiB and drains
//	              in 1–10 min, every 20–60 min (±20%), 6 h
//	cache         cache of 64 MiB–1 GiB filling with a time constant of
//	              1–30 min from 0–20 min, under a GC sawtooth of 30 s–2 min, 6 h
//	daily         daily load cycle of ±10–25% (with a second harmonic) and a
//	              weekly one (weekends 0–10% lower) over 7 days, under a GC
//	              sawtooth of 30 s–2 min, base 256 MiB–2 GiB
//
// Leaks hidden under the shapes above (rates in bytes/s from the leak start):
//
//	<shape>_leak_fast   1 MiB/s from 30 min–2 h in; runs 2 h past the start
//	<shape>_leak_slow   12 KiB/s from 30 min–2 h in; runs 5 h past the start
//	daily_leak_slow     12 KiB/s under a ±10–25% daily cycle, from day 1–2,
//	                    running one more day (2–3 days in all)
//
// and leaks of other shapes, under a GC sawtooth of 30 s–2 min:
//
//	leak_traffic        proportional to traffic (load ±20–50%), 1 MiB/s mean
//	leak_accel          starting at 12 KiB/s and doubling every 30–90 min, 3 h
//	leak_steps          steps of 2–16 MiB, on average every 1–10 min (Poisson;
//	                    Rate is the mean)
//	leak_oom            1 MiB/s until the limit (0.5–1 GiB above the working
//	                    set), then an OOM kill and a restart from 5% of the
//	                    base, over and over, 4 h
//
// Every series carries white noise of 0.2–1% of its base. Healthy series
// have a limit of max(4 GiB, 2×base + 2 GiB); leaking ones, a limit a
// quarter above their peak (leak_oom: 0.5–1 GiB above its working set). Labels give the
// family, whether the series leaks, the leak start, the rate, the longest GC
// period, the target class and the detection-time target (MaxDetect):
//
//	fast (1 MiB/s)  3 min past the start when GC cycles are ≤ 1 min, two GC
//	                cycles + 3 min when longer
//	slow (12 KiB/s) 4 h
//	daily           6 h (any leak under a daily cycle)
//	other           maxDetect(rate) of the old corpus, at the starting rate
//
// Leaks start at least 30 min in, past the detector's warm-up.
package corpusgen
