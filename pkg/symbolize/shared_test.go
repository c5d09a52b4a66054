package symbolize

import (
	"sync"
	"testing"
	"time"
)

// Many processes sharing libc, captured at once while one of them exits,
// then symbolized at once after all exited, as the agent does with an OOM
// kill's victim while its collection symbolizes the victim's siblings: each
// must resolve its libc address. Once the processes are gone, the only
// source of libc's symbols is the file held open since capture or the table
// loaded from it, so a lookup that misses the table and then the held file
// because another goroutine moved the one into the other in between finds
// nothing at all. The race window is small, so the test runs rounds, each
// with a new Symbolizer, for a bounded time: before the two lookups were
// one, 1 address in 340 rounds went unresolved on a busy 2-core host, and
// 307 in 40 rounds with a 2 ms sleep put between them.
func TestSharedLibcCapturedWhileOneExits(t *testing.T) {
	const (
		procs     = 12
		maxRounds = 200
		budget    = 20 * time.Second
	)
	bin := build(t, "cc", "leafcall", "-O1", "-g0", "-fno-omit-frame-pointer", "-fPIE", "-pie", "testdata/leafcall.c")
	// What libc's getppid resolves to, from a process that lives.
	ref := start(t, bin, "own_leaf", "getppid")
	want := funcName(symbolize(t, newTestSymbolizer(t, Config{}), ref, ref.vals["getppid"])[0])
	ref.stop(t)
	if len(want) == 0 || want[0] == '<' {
		t.Fatalf("getppid of a live process resolves to %q", want)
	}

	deadline := time.Now().Add(budget)
	rounds, unresolved := 0, 0
	for rounds < maxRounds && time.Now().Before(deadline) {
		rounds++
		fs := make([]*fixture, procs)
		for i := range fs {
			fs[i] = start(t, bin, "own_leaf", "getppid")
		}
		s, err := New(Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i, f := range fs {
			wg.Go(func() {
				if i == 0 {
					f.stop(t) // exits while the others are captured
				}
				// The exiting one may be gone already: that is its error.
				if err := s.Capture(f.pid, f.start); err != nil && i != 0 {
					t.Errorf("capturing %d: %v", f.pid, err)
				}
			})
		}
		wg.Wait()
		for _, f := range fs {
			f.stop(t)
		}
		results := make([]string, procs)
		for i, f := range fs[1:] {
			wg.Go(func() {
				locs, err := s.Symbolize(f.pid, f.start, []uint64{f.vals["getppid"]})
				if err != nil {
					t.Errorf("symbolizing %d: %v", f.pid, err)
					return
				}
				results[i+1] = funcName(locs[0])
			})
		}
		wg.Wait()
		_ = s.Close()
		for _, got := range results[1:] {
			if got != want {
				unresolved++
				if unresolved <= 3 {
					t.Errorf("round %d: libc's getppid of an exited process resolved to %q, want %q", rounds, got, want)
				}
			}
		}
	}
	t.Logf("%d rounds of %d processes; %d libc addresses unresolved", rounds, procs, unresolved)
}
