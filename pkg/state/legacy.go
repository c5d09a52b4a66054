package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Format 1 of the store was a bbolt database in the same file: bucket
// "meta" held the format version, the time of the last save and the last OOM
// kill sequence number; bucket "containers" one record per memory cgroup id
// (8 bytes, big endian); bucket "oomkills" one record per kill sequence
// number. It is still read, once, when an agent of format 2 first opens a
// directory written by an older one; the next save replaces it. Its pages
// had no checksums of their own, so one damaged byte anywhere cost the whole
// file: that is why format 2 left it.
const legacyFormat = 1

var (
	bucketMeta       = []byte("meta")
	bucketContainers = []byte("containers")
	bucketOOMKills   = []byte("oomkills")
	keyFormat        = []byte("format")
	keySaved         = []byte("saved")
	keyOOMSeq        = []byte("oom_seq")
)

// bboltMagic is the magic of a bbolt meta page, right after the 16-byte
// page header of the file's first page (little endian on every platform
// leakwatch runs on).
var bboltMagic = []byte{0xed, 0xda, 0x0c, 0xed}

// isLegacy tells a bbolt file by its first meta page.
func isLegacy(b []byte) bool {
	return len(b) >= 20 && string(b[16:20]) == string(bboltMagic)
}

// openLegacy opens a format 1 (bbolt) store and reads all of it. bbolt reads the file
// through a memory map and trusts its pages: a truncated file faults, a
// damaged page can panic. Both become errors here (SetPanicOnFault turns
// the fault into a panic), so the caller can set the file aside.
func openLegacy(path string, timeout time.Duration) (db *bolt.DB, snap Snapshot, err error) {
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
		snap, err = loadLegacy(tx)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, Snapshot{}, err
	}
	return db, snap, nil
}

// loadLegacy reads a checked format 1 store. An empty file (no bucket at all) is a new
// store.
func loadLegacy(tx *bolt.Tx) (Snapshot, error) {
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
	if f := binary.BigEndian.Uint32(v); f != legacyFormat {
		return snap, fmt.Errorf("format version %d, this leakwatch reads %d", f, legacyFormat)
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
