package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/oomrecord"
	"github.com/leakwatch/leakwatch/pkg/state"
	"github.com/leakwatch/leakwatch/pkg/view"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// TestSaveFailuresAreVisible: every failed save has its own log line, and
// the next snapshot (which /readyz and the metrics read) carries the count,
// the error and, once a save works again, the time of the last success.
func TestSaveFailuresAreVisible(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	var logs bytes.Buffer
	a, _ := fixtureAgentLog(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	defer func() { _ = a.Close() }()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.collect(t0)
	// A directory where the save writes its new file: every save fails,
	// even for root, which no permission stops.
	blocker := filepath.Join(cfg.StateDir, state.FileName+".tmp")
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := a.save(); err == nil {
			t.Fatal("save into a blocked directory succeeded")
		}
	}
	if n := strings.Count(logs.String(), `msg="state not saved"`); n != 3 {
		t.Errorf("%d log lines for 3 failed saves:\n%s", n, logs.String())
	}
	a.collect(t0.Add(10 * time.Second))
	st := a.Snapshot().Agent.State
	if st == nil || st.Failures != 3 || st.LastFailure == nil || !strings.Contains(st.LastError, "is a directory") || st.LastSuccess != nil {
		t.Fatalf("snapshot after 3 failed saves: %+v", st)
	}
	if a.Snapshot().Agent.Errors[errStateSave] != 3 {
		t.Errorf("errors: %v, want state_save 3", a.Snapshot().Agent.Errors)
	}

	if err := os.RemoveAll(blocker); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := a.save(); err != nil {
		t.Fatal(err)
	}
	a.collect(t0.Add(20 * time.Second))
	st = a.Snapshot().Agent.State
	if st.LastSuccess == nil || st.LastSuccess.Before(before) || st.Failures != 3 || st.Path != filepath.Join(cfg.StateDir, state.FileName) {
		t.Errorf("snapshot after a good save: %+v", st)
	}
}

// TestFinalSaveOnFullDiskIsLogged: with the state directory on a full
// file system (a tmpfs of 64 KiB, mounted beneath the test's own temporary
// directory), the save at shutdown fails with ENOSPC, and the log says so
// at error level; the half-written file is removed and the previous save
// stays whole.
func TestFinalSaveOnFullDiskIsLogged(t *testing.T) {
	cgtest.RequirePrivileged(t)
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", cfg.StateDir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Fatalf("mounting a small tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(cfg.StateDir, 0); err != nil {
			t.Errorf("unmounting %s: %v", cfg.StateDir, err)
		}
	})
	var logs bytes.Buffer
	a, _ := fixtureAgentLog(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	a.collect(time.Now())
	if err := a.save(); err != nil {
		t.Fatalf("a small save does not fit in 64 KiB: %v", err)
	}
	small, err := os.ReadFile(filepath.Join(cfg.StateDir, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	inflate(a, 300) // far more than 64 KiB of records

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run collects once, then stops with its final save
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `level=ERROR msg="state not saved before stopping"`) || !strings.Contains(out, "no space left on device") {
		t.Errorf("no error line for the failed final save:\n%s", out)
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.StateDir, "*.tmp")); len(left) > 0 {
		t.Errorf("half-written file left behind: %v", left)
	}
	if now, err := os.ReadFile(filepath.Join(cfg.StateDir, state.FileName)); err != nil || !bytes.Equal(now, small) {
		t.Errorf("the previous save did not stay whole (err %v)", err)
	}
}

// TestRestoreKeepsAllButTheDamagedRecord: an agent's own save of 510
// containers (their real series and detector state) and 8 OOM kills, with
// one byte flipped at each of 60 offsets across the file in turn, restores
// every container and kill but the one whose record held the byte.
func TestRestoreKeepsAllButTheDamagedRecord(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	a, dir := fixtureAgent(t, cfg)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		a.collect(t0.Add(time.Duration(i) * 10 * time.Second))
	}
	inflate(a, 510)
	kills := make([]oomrecord.Record, 8)
	for i := range kills {
		kills[i] = oomrecord.Record{
			Kill:  view.OOMKill{Seq: uint64(i + 1), Time: t0, ID: "1", Comm: "leaker", Trigger: "container"},
			Inuse: bytes.Repeat([]byte{byte(i)}, 2000),
		}
	}
	a.oom.Restore(8, kills)
	if err := a.save(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.StateDir, state.FileName)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	total := len(a.entries) + len(kills)
	for i := range 60 {
		off := 100 + i*(len(orig)-200)/59 // from the meta record to the last kill
		b := bytes.Clone(orig)
		b[off] ^= 0x40
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r := reopen(t, cfg, dir)
		got := len(r.entries) + len(r.oom.Kills())
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if got != total-1 && got != total { // total: the byte was in the meta record
			t.Fatalf("byte %d of %d flipped: %d of %d containers and kills restored, want %d", off, len(orig), got, total, total-1)
		}
		aside, _ := filepath.Glob(path + ".corrupt-*")
		for _, p := range aside {
			_ = os.Remove(p)
		}
	}
}

// inflate adds copies of the agent's first entry until it tracks n, each
// under its own memory cgroup id and path, sharing the detector and series.
func inflate(a *Agent, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var first *entry
	for _, e := range a.entries {
		first = e
		break
	}
	for id := uint64(1 << 40); len(a.entries) < n; id++ {
		e := *first
		e.c.MemcgID = id
		e.c.ID = fmt.Sprint(id)
		e.c.Cgroup = fmt.Sprintf("/copies/c%d", id)
		a.entries[id] = &e
	}
}
