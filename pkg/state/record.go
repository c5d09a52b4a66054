package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// A record is the magic "LWS", a kind byte, a version byte, then its
// sections, each a uvarint length and that many bytes, and nothing after.
// The container's and the kill's descriptions are JSON (tolerant of fields
// added later); history, detector state and profiles are the owners' own
// binary encodings, which check themselves.
const (
	recordMagic   = "LWS"
	recordVersion = 1
	kindContainer = 'C'
	kindOOMKill   = 'K'
	kindMeta      = 'M'
	// maxRecordBytes bounds what a record may claim: the largest real one
	// (a kill with two profiles) is far smaller.
	maxRecordBytes = 64 << 20
)

// containerJSON carries what view.Container leaves out of its JSON.
type containerJSON struct {
	view.Container
	TimeToLimit time.Duration `json:"verdict_time_to_limit_ns"`
}

// EncodeContainer encodes a container record.
func EncodeContainer(c Container) ([]byte, error) {
	desc, err := json.Marshal(containerJSON{Container: c.View, TimeToLimit: c.View.Verdict.TimeToLimit})
	if err != nil {
		return nil, fmt.Errorf("encoding container %d: %w", c.View.MemcgID, err)
	}
	return encodeRecord(kindContainer, desc, c.History, c.Detector), nil
}

// DecodeContainer decodes a record written by EncodeContainer.
func DecodeContainer(rec []byte) (Container, error) {
	sec, err := decodeRecord(rec, kindContainer, 3)
	if err != nil {
		return Container{}, err
	}
	var cj containerJSON
	if err := json.Unmarshal(sec[0], &cj); err != nil {
		return Container{}, fmt.Errorf("container description: %w", err)
	}
	c := Container{View: cj.Container, History: sec[1], Detector: sec[2]}
	c.View.Verdict.TimeToLimit = cj.TimeToLimit
	return c, nil
}

// EncodeOOMKill encodes a kill record.
func EncodeOOMKill(k OOMKill) ([]byte, error) {
	desc, err := json.Marshal(k.Kill)
	if err != nil {
		return nil, fmt.Errorf("encoding OOM kill %d: %w", k.Kill.Seq, err)
	}
	return encodeRecord(kindOOMKill, desc, k.Inuse, k.Faults), nil
}

// DecodeOOMKill decodes a record written by EncodeOOMKill. An empty profile
// comes back nil.
func DecodeOOMKill(rec []byte) (OOMKill, error) {
	sec, err := decodeRecord(rec, kindOOMKill, 3)
	if err != nil {
		return OOMKill{}, err
	}
	var k OOMKill
	if err := json.Unmarshal(sec[0], &k.Kill); err != nil {
		return OOMKill{}, fmt.Errorf("OOM kill description: %w", err)
	}
	if len(sec[1]) > 0 {
		k.Inuse = sec[1]
	}
	if len(sec[2]) > 0 {
		k.Faults = sec[2]
	}
	return k, nil
}

// encodeMeta encodes the meta record: the time of the save and the last OOM
// kill sequence number, 8 bytes each, big endian.
func encodeMeta(snap Snapshot) []byte {
	return encodeRecord(kindMeta,
		binary.BigEndian.AppendUint64(nil, uint64(snap.Saved.UnixNano())),
		binary.BigEndian.AppendUint64(nil, snap.OOMSeq))
}

func decodeMeta(rec []byte) (saved time.Time, oomSeq uint64, err error) {
	sec, err := decodeRecord(rec, kindMeta, 2)
	if err != nil {
		return time.Time{}, 0, err
	}
	if len(sec[0]) != 8 || len(sec[1]) != 8 {
		return time.Time{}, 0, errors.New("meta record: bad field length")
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(sec[0]))), binary.BigEndian.Uint64(sec[1]), nil
}

func encodeRecord(kind byte, sections ...[]byte) []byte {
	n := len(recordMagic) + 2
	for _, s := range sections {
		n += binary.MaxVarintLen64 + len(s)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, recordMagic...)
	buf = append(buf, kind, recordVersion)
	for _, s := range sections {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	return buf
}

// decodeRecord splits a record into exactly n sections. The sections are
// copies: bbolt's values live only as long as their transaction.
func decodeRecord(rec []byte, kind byte, n int) ([][]byte, error) {
	switch {
	case len(rec) > maxRecordBytes:
		return nil, fmt.Errorf("record of %d bytes, limit %d", len(rec), maxRecordBytes)
	case len(rec) < len(recordMagic)+2 || !bytes.HasPrefix(rec, []byte(recordMagic)):
		return nil, errors.New("not a leakwatch state record")
	case rec[len(recordMagic)] != kind:
		return nil, fmt.Errorf("record kind %q, want %q", rec[len(recordMagic)], kind)
	case rec[len(recordMagic)+1] != recordVersion:
		return nil, fmt.Errorf("record version %d, want %d", rec[len(recordMagic)+1], recordVersion)
	}
	rest := rec[len(recordMagic)+2:]
	out := make([][]byte, n)
	for i := range out {
		l, w := binary.Uvarint(rest)
		if w <= 0 {
			return nil, fmt.Errorf("section %d: bad length", i)
		}
		rest = rest[w:]
		if l > uint64(len(rest)) {
			return nil, fmt.Errorf("section %d: %d bytes claimed, %d left", i, l, len(rest))
		}
		out[i] = bytes.Clone(rest[:l])
		rest = rest[l:]
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(rest))
	}
	return out, nil
}
