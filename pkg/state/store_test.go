package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/leakwatch/leakwatch/pkg/view"
)

func testSnapshot() Snapshot {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := func(id uint64, gone bool) Container {
		return Container{
			View: view.Container{
				ID: "x", MemcgID: id, Cgroup: "/kubepods/pod/c" + string(rune('0'+id)), Kind: "container",
				Memory:    view.Memory{Usage: 100 << 20, LeakSignal: 80 << 20, Limit: 1 << 30},
				Verdict:   view.Verdict{Leaking: true, GrowthBytesPerSecond: 4096, Confidence: 0.99, TimeToLimit: time.Hour, LeakingSince: t0},
				FirstSeen: t0, LastSeen: t0.Add(time.Minute), Gone: gone,
			},
			History:  bytes.Repeat([]byte{byte(id)}, 4000),
			Detector: bytes.Repeat([]byte{byte(id + 1)}, 3000),
		}
	}
	return Snapshot{
		Saved:      t0.Add(2 * time.Minute),
		Containers: []Container{c(3, false), c(7, true)},
		OOMKills:   []OOMKill{{Kill: view.OOMKill{Seq: 5, Time: t0, ID: "3", Comm: "leaker", Trigger: "container"}, Inuse: []byte("pprof")}},
		OOMSeq:     5,
	}
}

func logTo(buf *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(buf, nil)) }

func TestSaveAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Loaded(); len(got.Containers) != 0 || len(got.OOMKills) != 0 {
		t.Fatalf("new store holds %+v", got)
	}
	want := testSnapshot()
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s, err = Open(Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	got := s.Loaded()
	if !got.Saved.Equal(want.Saved) {
		t.Errorf("saved at %v, want %v", got.Saved, want.Saved)
	}
	got.Saved = want.Saved
	for i := range got.Containers {
		v := &got.Containers[i].View
		// JSON gives times back in the local zone; the instants must match.
		for _, p := range []*time.Time{&v.FirstSeen, &v.LastSeen, &v.Verdict.LeakingSince} {
			*p = p.UTC()
		}
	}
	got.OOMKills[0].Kill.Time = got.OOMKills[0].Kill.Time.UTC()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reopened store holds\n%+v\nwant\n%+v", got, want)
	}

	// A later save replaces, not adds.
	if err := s.Save(Snapshot{Saved: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s, err = Open(Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if got := s.Loaded(); len(got.Containers) != 0 || len(got.OOMKills) != 0 {
		t.Errorf("after an empty save the store holds %d containers, %d kills", len(got.Containers), len(got.OOMKills))
	}
}

// writeLegacy writes snap as a format 1 (bbolt) store, as agents before
// format 2 did.
func writeLegacy(t *testing.T, path string, snap Snapshot) {
	t.Helper()
	withBolt(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for k, v := range map[string][]byte{
			string(keyFormat): binary.BigEndian.AppendUint32(nil, legacyFormat),
			string(keySaved):  binary.BigEndian.AppendUint64(nil, uint64(snap.Saved.UnixNano())),
			string(keyOOMSeq): binary.BigEndian.AppendUint64(nil, snap.OOMSeq),
		} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		cs, err := tx.CreateBucket(bucketContainers)
		if err != nil {
			return err
		}
		for _, c := range snap.Containers {
			rec, err := EncodeContainer(c)
			if err != nil {
				return err
			}
			if err := cs.Put(binary.BigEndian.AppendUint64(nil, c.View.MemcgID), rec); err != nil {
				return err
			}
		}
		ks, err := tx.CreateBucket(bucketOOMKills)
		if err != nil {
			return err
		}
		for _, k := range snap.OOMKills {
			rec, err := EncodeOOMKill(k)
			if err != nil {
				return err
			}
			if err := ks.Put(binary.BigEndian.AppendUint64(nil, k.Kill.Seq), rec); err != nil {
				return err
			}
		}
		return nil
	})(t, path)
}

func withBolt(fn func(tx *bolt.Tx) error) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLegacyStoreIsConverted: a format 1 store left by an older agent is
// read whole and rewritten as format 2.
func TestLegacyStoreIsConverted(t *testing.T) {
	dir := t.TempDir()
	want := testSnapshot()
	writeLegacy(t, filepath.Join(dir, FileName), want)
	var logs bytes.Buffer
	s, err := Open(Config{Dir: dir}, logTo(&logs))
	if err != nil {
		t.Fatal(err)
	}
	got := s.Loaded()
	if len(got.Containers) != 2 || len(got.OOMKills) != 1 || got.OOMSeq != 5 || !got.Saved.Equal(want.Saved) {
		t.Errorf("format 1 store read as %d containers, %d kills, seq %d, saved %v", len(got.Containers), len(got.OOMKills), got.OOMSeq, got.Saved)
	}
	if !strings.Contains(logs.String(), "converted") {
		t.Errorf("log does not say the store was converted: %q", logs.String())
	}
	_ = s.Close()
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, frameMagic) {
		t.Errorf("store not rewritten as format 2: starts %q", b[:min(8, len(b))])
	}
	s, err = Open(Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if n := len(s.Loaded().Containers); n != 2 {
		t.Errorf("converted store holds %d containers, want 2", n)
	}
}

// TestUnreadableStoreIsSetAside: a file with nothing intact in it is moved
// aside with a log line, and the agent gets an empty, working store.
func TestUnreadableStoreIsSetAside(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 2000), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated format 1", func(t *testing.T, path string) {
			snap := testSnapshot()
			for i := range 200 { // enough pages that a cut loses some
				c := snap.Containers[0]
				c.View.MemcgID = uint64(100 + i)
				snap.Containers = append(snap.Containers, c)
			}
			writeLegacy(t, path, snap)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"foreign version", withBolt(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keyFormat, binary.BigEndian.AppendUint32(nil, legacyFormat+7))
		})},
		{"another program's database", withBolt(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("users"))
			return err
		})},
		{"corrupt format 1 record", withBolt(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := b.Put(keyFormat, binary.BigEndian.AppendUint32(nil, legacyFormat)); err != nil {
				return err
			}
			cs, err := tx.CreateBucket(bucketContainers)
			if err != nil {
				return err
			}
			return cs.Put(binary.BigEndian.AppendUint64(nil, 1), []byte("LWSC\x01\xff\xff"))
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			tc.make(t, path)
			var logs bytes.Buffer
			s, err := Open(Config{Dir: dir}, logTo(&logs))
			if err != nil {
				t.Fatalf("Open: %v, want a fresh start", err)
			}
			defer func() { _ = s.Close() }()
			if got := s.Loaded(); len(got.Containers) != 0 || len(got.OOMKills) != 0 {
				t.Errorf("fresh store holds %+v", got)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Errorf("files set aside: %v, want one", aside)
			}
			if !strings.Contains(logs.String(), "moved aside") || !strings.Contains(logs.String(), "corrupt-") {
				t.Errorf("log does not say where the file went: %q", logs.String())
			}
			if err := s.Save(testSnapshot()); err != nil {
				t.Errorf("saving into the fresh store: %v", err)
			}
		})
	}
}

// TestLockedStoreFailsFast: a second agent on the same directory gets a
// clear error within the lock timeout instead of hanging.
func TestLockedStoreFailsFast(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	start := time.Now()
	_, err = Open(Config{Dir: dir, LockTimeout: 300 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another leakwatch") {
		t.Fatalf("second Open: %v, want ErrLocked naming the cause", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("second Open took %v with a 300ms timeout", took)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, FileName+".corrupt-*")); len(aside) > 0 {
		t.Errorf("a locked store was set aside: %v", aside)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, c := range testSnapshot().Containers {
		rec, err := EncodeContainer(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeContainer(rec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.History, c.History) || !bytes.Equal(got.Detector, c.Detector) ||
			got.View.Verdict.TimeToLimit != c.View.Verdict.TimeToLimit || got.View.Cgroup != c.View.Cgroup {
			t.Errorf("record round trip: %+v, want %+v", got.View, c.View)
		}
		for n := range len(rec) {
			if _, err := DecodeContainer(rec[:n]); err == nil {
				t.Fatalf("record truncated to %d of %d bytes: accepted", n, len(rec))
			}
		}
		if _, err := DecodeOOMKill(rec); err == nil {
			t.Error("container record decoded as an OOM kill")
		}
	}
}

// FuzzDecodeContainer: no record makes the decoder panic, and what it
// accepts encodes back to a record it accepts the same.
func FuzzDecodeContainer(f *testing.F) {
	for _, c := range testSnapshot().Containers {
		rec, _ := EncodeContainer(c)
		f.Add(rec)
	}
	k, _ := EncodeOOMKill(testSnapshot().OOMKills[0])
	f.Add(k)
	f.Fuzz(func(t *testing.T, rec []byte) {
		c, err := DecodeContainer(rec)
		if err != nil {
			_, _ = DecodeOOMKill(rec)
			return
		}
		again, err := EncodeContainer(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeContainer(again)
		if err != nil {
			t.Fatalf("re-encoded record rejected: %v", err)
		}
		if !bytes.Equal(c2.History, c.History) || !bytes.Equal(c2.Detector, c.Detector) {
			t.Fatal("sections change through a round trip")
		}
	})
}
