// Package state keeps what the agent must not lose across a restart (each
// container's series, detector state and verdict, and the OOM kills with
// their profiles) in an embedded bbolt database, DIR/leakwatch.db.
//
// Layout: bucket "meta" holds the format version, the time of the last save
// and the last OOM kill sequence number; bucket "containers" one record per
// memory cgroup id (8 bytes, big endian); bucket "oomkills" one record per
// kill sequence number. A save replaces all of it in one bbolt transaction,
// so a crash leaves the previous save or the new one, never a mix. Records
// are this package's own versioned encoding (see record.go).
//
// A file that bbolt cannot open, that fails bbolt's consistency check, that
// has another format version, or that holds a record that does not decode is
// moved aside as leakwatch.db.corrupt-<time> and replaced by an empty store:
// the agent starts fresh and says so in the log, it never fails on it.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// FileName is the store's file in the state directory.
const FileName = "leakwatch.db"

// formatVersion is the store's layout, in the meta bucket. A store of
// another version is set aside, not read.
const formatVersion = 1

var (
	bucketMeta       = []byte("meta")
	bucketContainers = []byte("containers")
	bucketOOMKills   = []byte("oomkills")
	keyFormat        = []byte("format")
	keySaved         = []byte("saved")
	keyOOMSeq        = []byte("oom_seq")
)

// Log keys.
const (
	logPath  = "path"
	logMoved = "moved_to"
	logErr   = "err"
)

// ErrLocked is returned by Open when another process holds the store.
var ErrLocked = errors.New("state store locked by another process")

// Config locates the store.
type Config struct {
	Dir string
	// LockTimeout bounds the wait for the file lock: a second agent on the
	// same directory must fail clearly, not hang.
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
	db     *bolt.DB
	path   string
	log    *slog.Logger
	loaded Snapshot
}

// Open opens or creates DIR/leakwatch.db and reads what it holds (see
// Loaded). An unreadable store is set aside and replaced by an empty one;
// the only errors are a store locked by another process (ErrLocked) and a
// directory or file that cannot be made.
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
	db, snap, err := openAndLoad(s.path, cfg.LockTimeout)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (waited %v; is another leakwatch running with this --state-dir?)", ErrLocked, s.path, cfg.LockTimeout)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("opening state store: %w", err)
	case err != nil:
		moved, mvErr := setAside(s.path)
		if mvErr != nil {
			return nil, fmt.Errorf("state store %s unreadable (%w) and not movable: %w", s.path, err, mvErr)
		}
		log.Warn("state store unreadable; moved aside, starting fresh", logPath, s.path, logMoved, moved, logErr, err)
		if db, snap, err = openAndLoad(s.path, cfg.LockTimeout); err != nil {
			return nil, fmt.Errorf("opening fresh state store: %w", err)
		}
	}
	s.db, s.loaded = db, snap
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keyFormat, binary.BigEndian.AppendUint32(nil, formatVersion))
	}); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("writing state store format: %w", err)
	}
	return s, nil
}

// Loaded returns what the store held when it was opened.
func (s *Store) Loaded() Snapshot { return s.loaded }

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Save replaces the stored state with snap in one transaction; bbolt syncs
// it to disk before returning.
func (s *Store) Save(snap Snapshot) error {
	if s.db == nil {
		return errors.New("state store closed")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keySaved, binary.BigEndian.AppendUint64(nil, uint64(snap.Saved.UnixNano()))); err != nil {
			return err
		}
		if err := meta.Put(keyOOMSeq, binary.BigEndian.AppendUint64(nil, snap.OOMSeq)); err != nil {
			return err
		}
		cs, err := recreate(tx, bucketContainers)
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
		ks, err := recreate(tx, bucketOOMKills)
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
	})
	if err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	return nil
}

// Close closes the store; it is idempotent.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

func recreate(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return nil, err
	}
	return tx.CreateBucket(name)
}

// openAndLoad opens the file and reads all of it. bbolt reads the file
// through a memory map and trusts its pages: a truncated file faults, a
// damaged page can panic. Both become errors here (SetPanicOnFault turns
// the fault into a panic), so the caller can set the file aside.
func openAndLoad(path string, timeout time.Duration) (db *bolt.DB, snap Snapshot, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading state store: %v", r)
			if db != nil {
				// The map may be unusable; close what can be closed.
				func() {
					defer func() { _ = recover() }()
					_ = db.Close()
				}()
				db = nil
			}
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return nil, Snapshot{}, err
	}
	if err = db.View(func(tx *bolt.Tx) error {
		// bbolt's check walks the pages in a goroutine of its own, where a
		// fault past the end of a truncated file would not be recovered:
		// rule truncation out first.
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() < tx.Size() {
			return fmt.Errorf("truncated: %d bytes, its pages need %d", fi.Size(), tx.Size())
		}
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 3 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("consistency check: %w", errors.Join(errs...))
		}
		snap, err = load(tx)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, Snapshot{}, err
	}
	return db, snap, nil
}

// load reads a checked store. An empty file (no bucket at all) is a new
// store.
func load(tx *bolt.Tx) (Snapshot, error) {
	var snap Snapshot
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return snap, errors.New("no meta bucket: not a leakwatch state store")
		}
		return snap, nil
	}
	v := meta.Get(keyFormat)
	if len(v) != 4 {
		return snap, errors.New("no format version")
	}
	if f := binary.BigEndian.Uint32(v); f != formatVersion {
		return snap, fmt.Errorf("format version %d, this leakwatch reads %d", f, formatVersion)
	}
	if v := meta.Get(keySaved); len(v) == 8 {
		snap.Saved = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	}
	if v := meta.Get(keyOOMSeq); len(v) == 8 {
		snap.OOMSeq = binary.BigEndian.Uint64(v)
	}
	if b := tx.Bucket(bucketContainers); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			c, err := DecodeContainer(v)
			if err != nil {
				return fmt.Errorf("container record %x: %w", k, err)
			}
			if len(k) != 8 || binary.BigEndian.Uint64(k) != c.View.MemcgID {
				return fmt.Errorf("container record %x: key does not match memcg id %d", k, c.View.MemcgID)
			}
			snap.Containers = append(snap.Containers, c)
			return nil
		}); err != nil {
			return snap, err
		}
	}
	if b := tx.Bucket(bucketOOMKills); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			o, err := DecodeOOMKill(v)
			if err != nil {
				return fmt.Errorf("OOM kill record %x: %w", k, err)
			}
			snap.OOMKills = append(snap.OOMKills, o)
			return nil
		}); err != nil {
			return snap, err
		}
	}
	return snap, nil
}

// setAside renames the file to FileName.corrupt-<UTC time>.
func setAside(path string) (string, error) {
	moved := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, moved); err != nil {
		return "", err
	}
	return moved, nil
}
