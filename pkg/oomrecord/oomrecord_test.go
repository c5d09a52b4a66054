package oomrecord

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	pprof "github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/pkg/view"
)

const mib = 1 << 20

var quiet = slog.New(slog.DiscardHandler)

// resolver names each address "fn<addr>" in a mapping of "/bin/work", and
// leaves addresses at or above 0x7f0000000000 unnamed in "libc.so.6".
type resolver struct{}

func (resolver) SkippedCaller(uint32, uint64, uint64, uint64) bool { return false }

func (resolver) Resolve(pid uint32, _ uint64, addrs []uint64) ([]profile.Location, error) {
	out := make([]profile.Location, len(addrs))
	for i, a := range addrs {
		if a >= 0x7f0000000000 {
			out[i] = profile.Location{Address: a, Mapping: &profile.Mapping{Start: 0x7f0000000000, Limit: 0x7f0000100000, File: "/usr/lib/libc.so.6", Executable: true}}
			continue
		}
		out[i] = profile.Location{Address: a, Mapping: &profile.Mapping{Start: 0x1000, Limit: 0x100000, File: "/bin/work", Executable: true},
			Frames: []profile.Frame{{Function: "fn" + strconv.FormatUint(a, 16)}}}
	}
	return out, nil
}

// Five earlier victims in one 64 MiB cgroup each grew 64 MiB through one
// stack; the sixth's record holds its own growth only, within the limit,
// and not what its pid faulted before its exec.
func TestRecordHoldsTheVictimsOwnGrowth(t *testing.T) {
	const memcg = 42
	store := profile.NewStore(profile.Config{Step: time.Second, Horizon: time.Hour, MaxKeys: 1000, MaxStacks: 1000})
	now := time.Unix(1_000_000, 0)
	starts := map[uint32]uint64{}
	info := func(pid uint32) (string, uint64, bool) { return "work", starts[pid], true }
	var events []tracer.Event
	for i := range 6 {
		pid := uint32(100 + i)
		starts[pid] = uint64(i+1) * 1e9
		snap := &tracer.Snapshot{Stacks: map[uint64]tracer.Stack{
			uint64(10 + i): {Frames: []uint64{0x7f0000001234, uint64(0x2000 + i*16), 0x3000}},
			99:             {Frames: []uint64{0x7f0000005678}},
		}}
		snap.Allocations = append(snap.Allocations, tracer.Allocation{Memcg: memcg, PID: pid, StackID: uint64(10 + i), Bytes: 64 * mib, Count: 64})
		snap.Faults = append(snap.Faults, tracer.FaultSample{Memcg: memcg, PID: pid, ExecID: 2, StackID: uint64(10 + i), Bytes: 64 * mib, Samples: 128},
			// The shell that exec'd the program, same pid: its faults went
			// with its memory at the exec.
			tracer.FaultSample{Memcg: memcg, PID: pid, ExecID: 1, StackID: 99, Bytes: 512 << 10, Samples: 1})
		now = now.Add(time.Second)
		store.Update(now, snap, info)
		store.ProcessExited(pid)
		// The kernel's start time is exact; /proc's is in 10 ms ticks.
		events = append(events, tracer.Event{Type: tracer.EventOOMKill, Time: now, Memcg: memcg, TriggerMemcg: memcg, OOMKind: tracer.OOMMemcg,
			Process: tracer.Process{PID: pid, StartTime: starts[pid] + 7e6}, ExecID: 2, Comm: "work"})
	}
	r := New(Config{Keep: 64, Window: 5 * time.Minute, TopStacks: 5, FaultSampleBytes: 512 << 10},
		Sources{Profiles: store, Resolver: resolver{}}, quiet)
	rec := r.build(events[5])

	for name, data := range map[string][]byte{"inuse": rec.Inuse, "faults": rec.Faults} {
		p, err := pprof.ParseData(data)
		if err != nil {
			t.Fatalf("%s profile: %v", name, err)
		}
		var total int64
		for _, s := range p.Sample {
			total += s.Value[len(s.Value)-1] // inuse_space or faulted_space: last
			if pid := s.NumLabel["pid"]; len(pid) != 1 || pid[0] != 105 {
				t.Errorf("%s profile has a sample of pid %v, want only the victim's 105", name, pid)
			}
		}
		if total != 64*mib {
			t.Errorf("%s profile totals %d bytes, want the victim's 64 MiB", name, total)
		}
	}
	// Return addresses are looked up one byte back, as in any profile.
	want := "64.0MiB libc.so.6+0x1234 < fn204f < fn2fff"
	if len(rec.Kill.TopStacks) != 1 || rec.Kill.TopStacks[0] != want || rec.Kill.TopStacksOf != view.StacksFaulted {
		t.Errorf("top stacks %q of %s, want [%q] of %s", rec.Kill.TopStacks, rec.Kill.TopStacksOf, want, view.StacksFaulted)
	}
}

func TestTrigger(t *testing.T) {
	r := New(Config{}, Sources{}, quiet)
	for _, tc := range []struct {
		ev   tracer.Event
		want string
	}{
		{tracer.Event{Memcg: 7, TriggerMemcg: 7, OOMKind: tracer.OOMMemcg}, TriggerContainer},
		{tracer.Event{Memcg: 7, TriggerMemcg: 3, OOMKind: tracer.OOMMemcg}, TriggerAncestor},
		{tracer.Event{Memcg: 7, TriggerMemcg: 7, OOMKind: tracer.OOMUnknown}, TriggerContainer},
		{tracer.Event{Memcg: 7, OOMKind: tracer.OOMGlobal}, TriggerNode},
		{tracer.Event{Memcg: 7, OOMKind: tracer.OOMMemcg}, TriggerUnknown},
	} {
		if got, _ := r.trigger(tc.ev); got != tc.want {
			t.Errorf("trigger of %+v = %q, want %q", tc.ev, got, tc.want)
		}
	}
}

// Records are built by Run, numbered in order and bounded; Add never
// blocks, and what does not fit the queue is counted.
func TestRecorderKeepsTheLast(t *testing.T) {
	r := New(Config{Keep: 3, Queue: 4}, Sources{}, quiet)
	for i := range 6 {
		r.Add(tracer.Event{Type: tracer.EventOOMKill, Memcg: 1, Process: tracer.Process{PID: uint32(i + 1)}})
	}
	if d := r.Dropped(); d != 2 {
		t.Errorf("dropped %d kills with a queue of 4, want 2", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if seq, _ := r.Records(); seq == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("4 queued kills not recorded within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	kills := r.Kills()
	if len(kills) != 3 || kills[0].Seq != 2 || kills[2].Seq != 4 || kills[2].PID != 4 {
		t.Errorf("kept %+v, want the last three, seq 2 to 4", kills)
	}
	if _, err := r.Profile(1, "inuse"); err == nil {
		t.Error("profile of a dropped record found")
	}
}

// A kill in a cgroup no scan saw (made and removed between two) is named
// by the tracer's record of the cgroups made, container ids and all.
func TestKillInARemovedCgroupIsNamed(t *testing.T) {
	const cid = "5f2c3a1b9d8e7f60112233445566778899aabbccddeeff00112233445566aa77"
	path := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b6e1d8a_8d5e_4f0e_9f4e_2f1f0e6f7a1b.slice/cri-containerd-" + cid + ".scope"
	made := func(memcg uint64) (string, bool) { return path, memcg == 7 }
	r := New(Config{}, Sources{Made: made}, quiet)
	rec := r.build(tracer.Event{Type: tracer.EventOOMKill, Memcg: 7, TriggerMemcg: 7, OOMKind: tracer.OOMMemcg})
	if k := rec.Kill; k.Cgroup != path || k.TriggerCgroup != path || k.ContainerID != cid {
		t.Errorf("kill named %q (trigger %q, container %q), want %q and container %s", k.Cgroup, k.TriggerCgroup, k.ContainerID, path, cid)
	}
	if k := r.build(tracer.Event{Type: tracer.EventOOMKill, Memcg: 8}).Kill; k.Cgroup != "" {
		t.Errorf("a cgroup neither scanned nor made named %q", k.Cgroup)
	}
}
