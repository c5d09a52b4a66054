package tracer

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// Close must leave no file descriptor, program, link or map behind. The
// programs checked are this tracer's own, by id, since other test binaries
// may load tracers at the same time.
func TestCloseLeavesNothing(t *testing.T) {
	cgtest.RequirePrivileged(t)
	// Warm up the runtime's own descriptors (epoll, BTF cache) first.
	warm, err := New(DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.Close(); err != nil {
		t.Fatal(err)
	}

	fdsBefore := openFDs(t)
	tr, err := New(DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var ids []ebpf.ProgramID
	for _, p := range tr.programs() {
		info, err := p.prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("kernel gives no program ids; the check would prove nothing")
		}
		ids = append(ids, id)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := openFDs(t); got != fdsBefore {
		t.Errorf("%d file descriptors open after Close, %d before", got, fdsBefore)
	}
	// The kernel frees a program once its last reference (fd or link) goes,
	// asynchronously; wait briefly.
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range ids {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				break
			}
			_ = p.Close()
			if time.Now().After(deadline) {
				t.Fatalf("program %d still loaded 5s after Close", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
