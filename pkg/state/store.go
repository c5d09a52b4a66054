// Package state keeps what the agent must not lose across a restart (each
// container's series, detector state and verdict, and the OOM kills with
// their profiles) in one file, DIR/leakwatch.db.
//
// Format 2, the one written: a sequence of frames, each the magic "LWF2", the
// payload's length (4 bytes, big endian), a CRC-32C of the length and the
// payload (4 bytes, big endian), then the payload: one record of this
// package's own versioned encoding (see record.go): a meta record (time of
// the save, last OOM kill sequence number), then one per container and one
// per kill. A save writes a new file beside the old one, syncs it and
// renames it over the old, so a crash leaves the previous save or the new
// one, never a mix.
//
// A damaged byte costs the record that holds it and nothing else: reading
// checks each frame's checksum, and after a bad one looks for the next magic,
// so every intact frame before and after it is kept. Such a file is moved
// aside as leakwatch.db.corrupt-<time> (for a post-mortem), the log says how
// many records were lost, and what was kept is written back at once. A file
// with no intact frame at all is moved aside and the agent starts fresh; it
// never fails on it. Format 1 (bbolt, see legacy.go) is still read.
package state

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// FileName is the store's file in the state directory.
const FileName = "leakwatch.db"

// lockName is the file whose flock marks the directory as taken: the store
// itself is replaced at every save, so it cannot carry the lock.
const lockName = "leakwatch.lock"

// Log keys.
const (
	logPath  = "path"
	logMoved = "moved_to"
	logErr   = "err"
	logLost  = "records_lost"
	logKept  = "records_kept"
)

// ErrLocked is returned by Open when another process holds the store.
var ErrLocked = errors.New("state store locked by another process")

// Config locates the store.
type Config struct {
	Dir string
	// LockTimeout bounds the wait for the lock: a second agent on the same
	// directory must fail clearly, not hang.
	LockTimeout time.Duration
}

// DefaultLockTimeout is the wait for the lock when Config leaves it 0.
const DefaultLockTimeout = 2 * time.Second

// Container is one tracked container as saved.
type Container struct {
	View     view.Container
	History  []byte // series.History.MarshalBinary
	Detector []byte // detect.Detector.MarshalBinary
}

// OOMKill is one retained kill with its profiles (gzipped pprof, or nil).
type OOMKill struct {
	Kill          view.OOMKill
	Inuse, Faults []byte
}

// Snapshot is everything saved at once.
type Snapshot struct {
	Saved      time.Time
	Containers []Container
	OOMKills   []OOMKill
	OOMSeq     uint64
}

// Store is an open state store. Its methods are safe for one caller at a
// time.
type Store struct {
	path   string
	lock   *os.File // nil once closed
	log    *slog.Logger
	loaded Snapshot
}

// Open takes the directory's lock, then reads what DIR/leakwatch.db holds
// (see Loaded). What cannot be read is set aside; the only errors are a
// store locked by another process (ErrLocked) and a directory or file that
// cannot be made.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("state: no directory")
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("making state directory: %w", err)
	}
	s := &Store{path: filepath.Join(cfg.Dir, FileName), log: log}
	lock, err := lockDir(filepath.Join(cfg.Dir, lockName), cfg.LockTimeout)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: %s (waited %v; is another leakwatch running with this --state-dir?)", ErrLocked, s.path, cfg.LockTimeout)
		}
		return nil, err
	}
	s.lock = lock
	if err := s.load(cfg.LockTimeout); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// load reads the file into s.loaded, setting aside what it cannot use.
func (s *Store) load(timeout time.Duration) error {
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("reading state store: %w", err)
	case len(b) == 0:
		return nil
	}
	if isLegacy(b) {
		return s.loadLegacy(timeout)
	}
	snap, r := decodeFile(b)
	if r.lost == 0 {
		s.loaded = snap
		return nil
	}
	moved, err := setAside(s.path)
	if err != nil {
		return fmt.Errorf("state store %s damaged and not movable: %w", s.path, err)
	}
	if r.kept == 0 {
		s.log.Warn("state store unreadable; moved aside, starting fresh", logPath, s.path, logMoved, moved)
		return nil
	}
	if snap.Saved.IsZero() { // the meta record was the one lost
		if fi, err := os.Stat(moved); err == nil {
			snap.Saved = fi.ModTime()
		}
	}
	s.loaded = snap
	s.log.Warn("state store damaged; kept its intact records, moved the file aside", logPath, s.path, logMoved, moved,
		logLost, r.lost, logKept, r.kept)
	// Written back now, so that a crash before the first save does not
	// start from nothing.
	if err := s.Save(snap); err != nil {
		s.log.Warn("writing back the intact records", logPath, s.path, logErr, err)
	}
	return nil
}

// loadLegacy reads a format 1 store and rewrites it as format 2.
func (s *Store) loadLegacy(timeout time.Duration) error {
	db, snap, err := openLegacy(s.path, timeout)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		// An older agent holds it through bbolt's own lock.
		return fmt.Errorf("%w: %s (waited %v; is another leakwatch running with this --state-dir?)", ErrLocked, s.path, timeout)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("opening state store: %w", err)
	case err != nil:
		moved, mvErr := setAside(s.path)
		if mvErr != nil {
			return fmt.Errorf("state store %s unreadable (%w) and not movable: %w", s.path, err, mvErr)
		}
		s.log.Warn("state store unreadable; moved aside, starting fresh", logPath, s.path, logMoved, moved, logErr, err)
		return nil
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("closing format %d state store: %w", legacyFormat, err)
	}
	s.loaded = snap
	if err := s.Save(snap); err != nil {
		return fmt.Errorf("rewriting format %d state store: %w", legacyFormat, err)
	}
	s.log.Info("state store converted", logPath, s.path, "from_format", legacyFormat, "to_format", formatVersion)
	return nil
}

// Loaded returns what the store held when it was opened.
func (s *Store) Loaded() Snapshot { return s.loaded }

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Save replaces the stored state with snap: it writes a new file, syncs it,
// renames it over the old one and syncs the directory.
func (s *Store) Save(snap Snapshot) error {
	if s.lock == nil {
		return errors.New("state store closed")
	}
	if err := writeAtomic(s.path, func(w *bufio.Writer) error { return encodeFile(w, snap) }); err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	return nil
}

// Close releases the directory; it is idempotent.
func (s *Store) Close() error {
	if s == nil || s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor drops the flock
	s.lock = nil
	return err
}

// formatVersion is the file layout written; see the package comment.
const formatVersion = 2

// frameMagic opens every frame. Its last byte is the format.
var frameMagic = []byte("LWF2")

const frameHeader = 4 + 4 + 4 // magic, length, checksum

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeFile writes the meta record, then each container and kill.
func encodeFile(w *bufio.Writer, snap Snapshot) error {
	if err := writeFrame(w, encodeMeta(snap)); err != nil {
		return err
	}
	for _, c := range snap.Containers {
		rec, err := EncodeContainer(c)
		if err != nil {
			return err
		}
		if err := writeFrame(w, rec); err != nil {
			return err
		}
	}
	for _, k := range snap.OOMKills {
		rec, err := EncodeOOMKill(k)
		if err != nil {
			return err
		}
		if err := writeFrame(w, rec); err != nil {
			return err
		}
	}
	return nil
}

func writeFrame(w *bufio.Writer, payload []byte) error {
	var h [frameHeader]byte
	copy(h[:], frameMagic)
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	sum := crc32.Update(crc32.Checksum(h[4:8], castagnoli), castagnoli, payload)
	binary.BigEndian.PutUint32(h[8:], sum)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame returns the payload of the frame at the start of b and the
// frame's whole length, or ok false when there is no intact frame there.
func readFrame(b []byte) (payload []byte, n int, ok bool) {
	if len(b) < frameHeader || !bytes.Equal(b[:4], frameMagic) {
		return nil, 0, false
	}
	l := binary.BigEndian.Uint32(b[4:8])
	if l > maxRecordBytes || uint64(len(b)-frameHeader) < uint64(l) {
		return nil, 0, false
	}
	payload = b[frameHeader : frameHeader+int(l)]
	if crc32.Update(crc32.Checksum(b[4:8], castagnoli), castagnoli, payload) != binary.BigEndian.Uint32(b[8:12]) {
		return nil, 0, false
	}
	return payload, frameHeader + int(l), true
}

// readResult counts what decodeFile kept and lost. A run of damaged bytes
// counts as one lost record: it is at least one, and a single damaged byte
// touches one frame.
type readResult struct{ kept, lost int }

// decodeFile reads every intact frame of b. After a damaged frame it
// resumes at the next magic, so one bad byte costs one record.
func decodeFile(b []byte) (Snapshot, readResult) {
	var (
		snap     Snapshot
		r        readResult
		haveMeta bool
		damaged  bool
	)
	for off := 0; off < len(b); {
		payload, n, ok := readFrame(b[off:])
		if !ok {
			damaged = true
			next := bytes.Index(b[off+1:], frameMagic)
			if next < 0 {
				break
			}
			off += 1 + next
			continue
		}
		if damaged {
			r.lost++
			damaged = false
		}
		off += n
		if err := decodePayload(payload, &snap, &haveMeta); err != nil {
			r.lost++
			continue
		}
		r.kept++
	}
	if damaged {
		r.lost++
	}
	for _, k := range snap.OOMKills {
		// Without its meta record the sequence must still not go back.
		snap.OOMSeq = max(snap.OOMSeq, k.Kill.Seq)
	}
	return snap, r
}

// decodePayload adds one record to snap.
func decodePayload(p []byte, snap *Snapshot, haveMeta *bool) error {
	if len(p) < len(recordMagic)+1 {
		return errors.New("short record")
	}
	switch p[len(recordMagic)] {
	case kindMeta:
		if *haveMeta {
			return errors.New("second meta record")
		}
		saved, seq, err := decodeMeta(p)
		if err != nil {
			return err
		}
		snap.Saved, snap.OOMSeq, *haveMeta = saved, max(snap.OOMSeq, seq), true
	case kindContainer:
		c, err := DecodeContainer(p)
		if err != nil {
			return err
		}
		snap.Containers = append(snap.Containers, c)
	case kindOOMKill:
		k, err := DecodeOOMKill(p)
		if err != nil {
			return err
		}
		snap.OOMKills = append(snap.OOMKills, k)
	default:
		return fmt.Errorf("record kind %q", p[len(recordMagic)])
	}
	return nil
}

// writeAtomic writes path through a temporary file beside it: written,
// synced, renamed over path, then the directory synced, so that path holds
// the old content or the new, whole.
func writeAtomic(path string, write func(*bufio.Writer) error) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 256<<10)
	if err = write(w); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err = w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer func() { _ = dir.Close() }()
	if err = dir.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// lockDir takes an exclusive flock on path, trying until timeout.
func lockDir(path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening state lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, ErrLocked
			}
			return nil, fmt.Errorf("locking state directory: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setAside renames the file to FileName.corrupt-<UTC time>.
func setAside(path string) (string, error) {
	moved := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, moved); err != nil {
		return "", err
	}
	return moved, nil
}
