package state

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// bigSnapshot is the size the adversarial run lost at once: 510 containers
// and 8 OOM kills, with series, detector and profile bytes of varied length.
func bigSnapshot() Snapshot {
	snap := testSnapshot()
	base := snap.Containers[0]
	snap.Containers = nil
	for i := range 510 {
		c := base
		c.View.MemcgID = uint64(1000 + i)
		c.View.Cgroup = fmt.Sprintf("/kubepods/burstable/pod%04d/c%d", i, i)
		c.View.Gone = i%5 == 0
		c.History = bytes.Repeat([]byte{byte(i)}, 100+i%300)
		c.Detector = bytes.Repeat([]byte{byte(i + 1)}, 50+i%200)
		snap.Containers = append(snap.Containers, c)
	}
	snap.OOMKills = nil
	for i := range 8 {
		snap.OOMKills = append(snap.OOMKills, OOMKill{
			Kill:  view.OOMKill{Seq: uint64(10 + i), Time: snap.Saved, ID: "1003", Comm: "leaker", Trigger: "container"},
			Inuse: bytes.Repeat([]byte{0x1f, 0x8b, byte(i)}, 500+100*i),
		})
	}
	snap.OOMSeq = 17
	return snap
}

// frame is one record of a written file: where it lies and what it is.
type frame struct {
	start, end int
	key        string
}

// fingerprints names every record of snap as decodeFile gives it back,
// with the bytes that make up most of it (its description's round trip is
// TestSaveAndReopen's), cheap enough to compare thousands of times.
func fingerprints(snap Snapshot, withMeta bool) map[string][]byte {
	m := map[string][]byte{}
	if withMeta {
		m["meta"] = encodeMeta(snap)
	}
	for _, c := range snap.Containers {
		m[fmt.Sprintf("container %d", c.View.MemcgID)] = slices.Concat([]byte(c.View.Cgroup), c.History, c.Detector)
	}
	for _, k := range snap.OOMKills {
		m[fmt.Sprintf("kill %d", k.Kill.Seq)] = slices.Concat([]byte(k.Kill.Comm), k.Inuse, k.Faults)
	}
	return m
}

// frames lists the frames of an intact file.
func frames(t *testing.T, b []byte) []frame {
	t.Helper()
	var out []frame
	var meta bool
	for off := 0; off < len(b); {
		p, n, ok := readFrame(b[off:])
		if !ok {
			t.Fatalf("intact file has no frame at %d", off)
		}
		var one Snapshot
		if err := decodePayload(p, &one, &meta); err != nil {
			t.Fatal(err)
		}
		var key string
		switch {
		case len(one.Containers) == 1:
			key = fmt.Sprintf("container %d", one.Containers[0].View.MemcgID)
		case len(one.OOMKills) == 1:
			key = fmt.Sprintf("kill %d", one.OOMKills[0].Kill.Seq)
		default:
			key = "meta"
		}
		out = append(out, frame{off, off + n, key})
		off += n
	}
	return out
}

// TestDamagedByteCostsOneRecord writes the store with the real Store,
// flips a byte at about a thousand offsets (see below) and checks that reading loses exactly the record holding the
// byte, says so, and gives back every other one unchanged.
func TestDamagedByteCostsOneRecord(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	snap := bigSnapshot()
	if err := s.Save(snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	want := fingerprints(snap, true)
	fs := frames(t, orig)
	if len(fs) != len(want) {
		t.Fatalf("file has %d frames, snapshot %d records", len(fs), len(want))
	}

	// Every byte of the meta record; every header byte of the first, last
	// and every 32nd record; every 11th byte of the first container and the
	// last kill; random bytes anywhere.
	var offsets []int
	for i, f := range fs {
		for o := f.start; o < f.end; o++ {
			inHeader := o < f.start+frameHeader
			switch {
			case i == 0,
				inHeader && (i < 3 || i%32 == 0 || i > len(fs)-4),
				(i == 1 || i == len(fs)-1) && (o-f.start)%11 == 0:
				offsets = append(offsets, o)
			}
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		offsets = append(offsets, rnd.IntN(len(orig)))
	}
	t.Logf("file %d bytes, %d records, %d offsets", len(orig), len(fs), len(offsets))

	holder := func(o int) string {
		for _, f := range fs {
			if o >= f.start && o < f.end {
				return f.key
			}
		}
		t.Fatalf("offset %d in no frame", o)
		return ""
	}
	b := make([]byte, len(orig))
	for i, o := range offsets {
		copy(b, orig)
		b[o] ^= []byte{0x01, 0x80, 0xff, 0x5a}[i%4]
		got, r := decodeFile(b)
		lost := holder(o)
		if r.lost != 1 || r.kept != len(want)-1 {
			t.Errorf("byte %d (in %s) flipped: %d records kept, %d lost; want %d and 1", o, lost, r.kept, r.lost, len(want)-1)
			continue
		}
		have := fingerprints(got, lost != "meta")
		for k, rec := range want {
			if k == lost {
				if _, ok := have[k]; ok {
					t.Errorf("byte %d flipped: %s came back", o, k)
				}
				continue
			}
			if !bytes.Equal(have[k], rec) {
				t.Errorf("byte %d (in %s) flipped: %s lost or changed", o, lost, k)
			}
		}
		if len(have) != len(want)-1 {
			t.Errorf("byte %d flipped: %d records back, want %d", o, len(have), len(want)-1)
		}
		if t.Failed() {
			return
		}
	}
}

// TestOpenKeepsTheIntactRecords: through Open, a damaged file is moved
// aside, the log counts the loss, the intact records are loaded and written
// back, and the sequence of OOM kills does not go back even when the meta
// record is the one lost.
func TestOpenKeepsTheIntactRecords(t *testing.T) {
	snap := bigSnapshot()
	for _, tc := range []struct {
		name string
		hurt func(b []byte) []byte
		// lost is how many containers and kills go; -1: those the cut
		// leaves no whole frame
		lost int
	}{
		{"meta record", func(b []byte) []byte { b[frameHeader+5] ^= 0xff; return b }, 0},
		{"a container's length", func(b []byte) []byte {
			f := frames(t, b)[100]
			b[f.start+6] ^= 0x10
			return b
		}, 1},
		{"cut in the last record", func(b []byte) []byte { return b[:len(b)-10] }, 1},
		{"cut in half", func(b []byte) []byte { return b[:len(b)/2] }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Config{Dir: dir}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Save(snap); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			path := filepath.Join(dir, FileName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b = tc.hurt(b)
			total := len(snap.Containers) + len(snap.OOMKills)
			want := total - tc.lost
			if tc.lost < 0 {
				want = -1 // the meta record
				for off := 0; ; want++ {
					_, n, ok := readFrame(b[off:])
					if !ok {
						break
					}
					off += n
				}
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s, err = Open(Config{Dir: dir}, logTo(&logs))
			if err != nil {
				t.Fatal(err)
			}
			got := s.Loaded()
			_ = s.Close()
			n := len(got.Containers) + len(got.OOMKills)
			if n != want || want < total/3 {
				t.Errorf("%d containers and kills loaded, want %d of %d", n, want, total)
			}
			if got.OOMSeq < 17 && len(got.OOMKills) == 8 {
				t.Errorf("OOM sequence went back to %d", got.OOMSeq)
			}
			if got.Saved.IsZero() {
				t.Error("no save time: the agent would take the store for empty")
			}
			if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
				t.Errorf("files set aside: %v, want one", aside)
			}
			if !strings.Contains(logs.String(), "records_lost=") {
				t.Errorf("log does not count the loss: %q", logs.String())
			}
			// Written back: the next start reads it clean.
			var again bytes.Buffer
			s, err = Open(Config{Dir: dir}, logTo(&again))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			if m := len(s.Loaded().Containers) + len(s.Loaded().OOMKills); m != n || again.Len() > 0 {
				t.Errorf("reopened: %d records (want %d), log %q", m, n, again.String())
			}
		})
	}
}
